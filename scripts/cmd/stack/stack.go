package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"orderpush/pkg/token"
	"orderpush/pkg/wire"
	"orderpush/scripts/launch"
)

// options are the stack's flags.
type options struct {
	host         string
	orderAPIPort int
	gatewayPorts []int
	miniredis    bool   // force the in-process Redis
	dataDir      string // empty: a temporary directory removed at exit
	binDir       string // empty: <repo>/bin
	merchant     string
	member       string
	tokenTTL     time.Duration
	readyWait    time.Duration
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	o := options{}
	fs := flag.NewFlagSet("stack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.host, "host", "127.0.0.1", "interface the services listen on")
	fs.IntVar(&o.orderAPIPort, "orderapi-port", 8090, "order API port")
	ports := fs.String("gateway-ports", "8080,8081", "comma-separated ports, one gateway replica each")
	fs.BoolVar(&o.miniredis, "miniredis", false, "use the in-process Redis even when REDIS_URL or redis-server is available")
	fs.StringVar(&o.dataDir, "data", "", "directory for the SQLite database and logs (default: a temporary one, removed at exit)")
	fs.StringVar(&o.binDir, "bin", "", "where to build the binaries (default: <repo>/bin)")
	fs.StringVar(&o.merchant, "merchant", "m1", "merchant id of the printed merchant token")
	fs.StringVar(&o.member, "member", "u1001", "user id of the printed member token")
	fs.DurationVar(&o.tokenTTL, "token-ttl", 24*time.Hour, "lifetime of the printed tokens")
	fs.DurationVar(&o.readyWait, "ready-timeout", 60*time.Second, "how long to wait for each service's /readyz")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./scripts/cmd/stack [flags]\n       go run ./scripts/cmd/stack watch [-token JWT] [-since N] WS_URL")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (try -h)", fs.Arg(0))
	}
	for _, s := range strings.Split(*ports, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || p <= 0 || p > 65535 {
			return o, fmt.Errorf("-gateway-ports: %q is not a port", s)
		}
		o.gatewayPorts = append(o.gatewayPorts, p)
	}
	if o.orderAPIPort <= 0 || o.orderAPIPort > 65535 {
		return o, fmt.Errorf("-orderapi-port: %d is not a port", o.orderAPIPort)
	}
	if !wire.ValidMerchantID(o.merchant) {
		return o, fmt.Errorf("-merchant: %q is not a merchant id", o.merchant)
	}
	if !wire.ValidUserID(o.member) {
		return o, fmt.Errorf("-member: %q is not a user id", o.member)
	}
	seen := map[int]bool{o.orderAPIPort: true}
	for _, p := range o.gatewayPorts {
		if seen[p] {
			return o, fmt.Errorf("port %d is given twice", p)
		}
		seen[p] = true
	}
	return o, nil
}

// service is one started process of the stack.
type service struct {
	name string
	url  string
	node string // gateways only
	proc *launch.Proc
}

func runStack(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (err error) {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	// Fail before the slow build when a port is taken.
	for _, p := range append([]int{o.orderAPIPort}, o.gatewayPorts...) {
		if err := portFree(o.host, p); err != nil {
			return fmt.Errorf("%w (choose others with -orderapi-port / -gateway-ports)", err)
		}
	}
	secret := getenv("JWT_SECRET")
	if secret == "" {
		secret = launch.NewSecret()
	} else if err := token.CheckSecret([]byte(secret)); err != nil {
		return err
	}
	root, err := launch.RepoRoot()
	if err != nil {
		return fmt.Errorf("%w (run it from inside the repository)", err)
	}
	if o.binDir == "" {
		o.binDir = filepath.Join(root, "bin")
	}
	if o.dataDir == "" {
		dir, err := os.MkdirTemp("", "orderpush-stack-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.dataDir = dir
	}
	logDir := filepath.Join(o.dataDir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}

	logf(stderr, "building gateway and orderapi into %s", o.binDir)
	start := time.Now()
	bins, err := launch.Build(ctx, root, o.binDir)
	if err != nil {
		if ctx.Err() != nil {
			return nil // Ctrl-C while building
		}
		return err
	}
	logf(stderr, "built in %s", time.Since(start).Round(100*time.Millisecond))

	rds, err := startRedis(ctx, o, getenv, logDir, stderr)
	if err != nil {
		return err
	}
	defer rds.stop()

	// Children live until stopped below in order (gateways first, so
	// sockets close with 1001 while the order API still answers).
	procCtx, cancelProcs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelProcs()
	var services []*service
	defer func() {
		for i := len(services) - 1; i >= 0; i-- {
			s := services[i]
			running := !s.proc.Exited()
			if code, serr := s.proc.Stop(launch.StopTimeout); running && (serr != nil || code != 0) && err == nil {
				err = fmt.Errorf("%s: stop: exit status %d, %v", s.name, code, serr)
			}
		}
	}()
	common := []string{"REDIS_URL=" + rds.url, "JWT_SECRET=" + secret, "LOG_FORMAT=json"}

	api := &service{name: "orderapi", url: fmt.Sprintf("http://%s", net.JoinHostPort(o.host, strconv.Itoa(o.orderAPIPort)))}
	api.proc, err = launch.Start(procCtx, launch.Spec{
		Name: api.name, Path: bins.OrderAPI, LogFile: filepath.Join(logDir, "orderapi.log"),
		Env: append(common,
			"ORDERAPI_ADDR="+net.JoinHostPort(o.host, strconv.Itoa(o.orderAPIPort)),
			"DATABASE_URL=sqlite://"+filepath.Join(o.dataDir, "orders.db")),
	})
	if err != nil {
		return err
	}
	services = append(services, api)
	for i, p := range o.gatewayPorts {
		g := &service{
			name: "gateway-" + string(rune('a'+i%26)),
			url:  fmt.Sprintf("http://%s", net.JoinHostPort(o.host, strconv.Itoa(p))),
			node: "gw-" + string(rune('a'+i%26)),
		}
		if i >= 26 {
			g.name, g.node = fmt.Sprintf("gateway-%d", i), fmt.Sprintf("gw-%d", i)
		}
		g.proc, err = launch.Start(procCtx, launch.Spec{
			Name: g.name, Path: bins.Gateway, LogFile: filepath.Join(logDir, g.name+".log"),
			Env: append(common,
				"GATEWAY_ADDR="+net.JoinHostPort(o.host, strconv.Itoa(p)),
				"NODE_ID="+g.node,
				"ORDERAPI_URL="+api.url,
				// The dashboard a gateway serves calls the order API on
				// its own port (no nginx here to route /api).
				"DASHBOARD_API_URL="+api.url),
		})
		if err != nil {
			return err
		}
		services = append(services, g)
	}
	for _, s := range services {
		wctx, cancel := context.WithTimeout(ctx, o.readyWait)
		err := s.proc.WaitReady(wctx, s.url)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted while starting
			}
			return err
		}
	}
	printBanner(stdout, o, secret, rds, services)

	// Run until a signal, or until a service dies on its own.
	died := make(chan *service, len(services))
	for _, s := range services {
		go func() {
			select {
			case <-s.proc.Done():
				died <- s
			case <-procCtx.Done():
			}
		}()
	}
	select {
	case <-ctx.Done():
		logf(stderr, "stopping")
		return nil
	case s := <-died:
		code, werr := s.proc.Wait()
		return fmt.Errorf("%s exited on its own (status %d, %v); its log ends:\n%s", s.name, code, werr, s.proc.LogTail(4096))
	}
}

// portFree reports an error when host:port cannot be listened on now.
func portFree(host string, port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("port %d on %s is not free: %w", port, host, errors.Unwrap(err))
	}
	return l.Close()
}

func printBanner(w io.Writer, o options, secret string, rds *redisServer, services []*service) {
	secretB := []byte(secret)
	merchantTok := launch.MintToken(secretB, token.RoleMerchant, o.merchant, o.tokenTTL)
	memberTok := launch.MintToken(secretB, token.RoleMember, o.member, o.tokenTTL)
	api := services[0]
	gateways := services[1:]
	wsURL := func(s *service) string { return "ws" + strings.TrimPrefix(s.url, "http") + "/ws" }

	fmt.Fprintf(w, "\norderpush local stack is up (data and logs in %s)\n\n", o.dataDir)
	fmt.Fprintf(w, "  redis      %s (%s)\n", rds.url, rds.kind)
	fmt.Fprintf(w, "  orderapi   %s\n", api.url)
	for _, g := range gateways {
		fmt.Fprintf(w, "  %-10s %s  node %s, socket %s\n", g.name, g.url, g.node, wsURL(g))
	}
	fmt.Fprintf(w, "\nDashboard of merchant %s (any gateway serves it):\n  %s/?token=%s\n", o.merchant, gateways[0].url, merchantTok)
	fmt.Fprintf(w, "\nmerchant token (%s): %s\n", o.merchant, merchantTok)
	fmt.Fprintf(w, "member token (%s): %s\n", o.member, memberTok)
	fmt.Fprintf(w, "JWT_SECRET: %s\n", secret)

	last := gateways[len(gateways)-1]
	fmt.Fprintf(w, "\nWatch merchant %s's socket (another terminal; prints each frame):\n", o.merchant)
	fmt.Fprintf(w, "  go run ./scripts/cmd/stack watch -token %s %s\n", merchantTok, wsURL(last))
	if _, err := exec.LookPath("websocat"); err == nil {
		fmt.Fprintf(w, "  websocat '%s?token=%s'\n", wsURL(last), merchantTok)
	}
	fmt.Fprintf(w, "\nPlace an order for %s:\n", o.merchant)
	fmt.Fprintf(w, "  curl -sS -X POST %s/orders -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' -d '{\"merchantId\":\"%s\",\"date\":\"2022-06-22\",\"price\":36}'\n",
		api.url, memberTok, o.merchant)
	fmt.Fprintf(w, "\nSummary:\n  curl -sS %s/merchants/%s/summary -H 'Authorization: Bearer %s'\n", api.url, o.merchant, merchantTok)
	fmt.Fprintf(w, "\nMore tokens:\n  JWT_SECRET=%s go run ./scripts/cmd/token -role merchant -sub m2\n", secret)
	fmt.Fprintf(w, "\nPress Ctrl-C to stop.\n")
}
