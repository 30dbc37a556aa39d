package prodstack

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"orderpush/pkg/token"
	"orderpush/scripts/launch"
)

// Options configure Start. Only Bins is required.
type Options struct {
	Root string          // repository root; "": found from the working directory
	Bins launch.Binaries // the built gateway and orderapi
	// Dir holds logs, the nginx prefix and the SQLite file. "": a temporary
	// directory that Close removes.
	Dir      string
	Port     int    // nginx's port on 127.0.0.1; 0: a free one
	Database string // "postgres" (default) or "sqlite"
	// PGAdminURL names the PostgreSQL server the stack's database is created
	// on (and dropped from by Close). "": PG_ADMIN_URL, else
	// DefaultPGAdminURL.
	PGAdminURL string
	RedisBin   string // "": REDIS_SERVER, else redis-server on PATH
	NginxBin   string // "": NginxBinary
	// Env entries (KEY=VALUE) are given to every replica after the ones
	// taken from the compose file, so they win.
	Env []string
	// Merchants are registered at start, after the compose file's demo
	// merchants (the order API runs MERCHANTS=registered, as in compose).
	Merchants []string
	// ReadyTimeout bounds each wait for readiness; 0: 90 s (binaries built
	// with -race on a busy machine start slowly).
	ReadyTimeout time.Duration
}

// Process is one running process of the stack.
type Process struct {
	Name string // compose service name, e.g. gateway2
	Kind string // KindGateway, KindOrderAPI, ...
	Node string // NODE_ID of a gateway
	Addr string // 127.0.0.1:port
	URL  string // http://Addr
	Env  []string
	Proc *launch.Proc
}

// Stack is a running production topology.
type Stack struct {
	URL string // nginx: http://127.0.0.1:port, the only entry point
	// Key is the token issuer's Ed25519 private key; the replicas hold only
	// the public key (PublicKeyFile), as in the compose file.
	Key           ed25519.PrivateKey
	PublicKeyFile string
	Dir           string
	Compose       *Compose
	Redis         *Process
	OrderAPIs     []*Process
	Gateways      []*Process
	Nginx         *Process
	// DatabaseURL is the order API's DATABASE_URL.
	DatabaseURL string

	opts    Options
	tempDir bool
	cancel  context.CancelFunc
	runCtx  context.Context
	dropDB  func(context.Context) error
	addrs   map[string]string // compose "service:port" -> local address

	closeOnce sync.Once
	closeErr  error
}

// WS is the merchant socket URL through nginx.
func (s *Stack) WS() string { return "ws" + strings.TrimPrefix(s.URL, "http") + "/ws" }

// API is the order API's base URL through nginx.
func (s *Stack) API() string { return s.URL + "/api" }

// Token mints a token with the stack's private key, valid for an hour.
func (s *Stack) Token(role, sub string) string { return s.TokenTTL(role, sub, time.Hour) }

// TokenTTL mints a token with the stack's private key, valid for ttl.
func (s *Stack) TokenTTL(role, sub string, ttl time.Duration) string {
	now := time.Now()
	t, err := token.MintKey(s.Key, token.Claims{Role: role, RegisteredClaims: jwt.RegisteredClaims{
		Subject: sub, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}})
	if err != nil {
		panic(err) // an Ed25519 key always signs
	}
	return t
}

// Gateway returns the gateway whose NODE_ID is node, or nil.
func (s *Stack) Gateway(node string) *Process {
	for _, g := range s.Gateways {
		if g.Node == node {
			return g
		}
	}
	return nil
}

// Start brings the stack up: Redis, the database, the order API replicas,
// the gateway replicas, then nginx, each waited for. On error everything
// already started is torn down. ctx bounds the start only; the processes
// run until Close.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	s, err := newStack(opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	steps := []func(context.Context) error{s.startRedis, s.startDatabase, s.startOrderAPIs, s.startGateways, s.startNginx, s.registerMerchants}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func newStack(opts Options) (*Stack, error) {
	if opts.Bins.Gateway == "" || opts.Bins.OrderAPI == "" {
		return nil, errors.New("prodstack: Options.Bins is required")
	}
	if opts.Root == "" {
		root, err := launch.RepoRoot()
		if err != nil {
			return nil, err
		}
		opts.Root = root
	}
	if opts.Database == "" {
		opts.Database = "postgres"
	}
	if opts.Database != "postgres" && opts.Database != "sqlite" {
		return nil, fmt.Errorf("prodstack: database %q: want postgres or sqlite", opts.Database)
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 90 * time.Second
	}
	s := &Stack{opts: opts, addrs: map[string]string{}}
	var err error
	if s.Dir = opts.Dir; s.Dir == "" {
		if s.Dir, err = os.MkdirTemp("", "orderpush-prodstack-"); err != nil {
			return nil, err
		}
		s.tempDir = true
	} else if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, err
	}
	// What an operator does before "compose up" (deploy/.env.example): a
	// key pair, and a service token for the gateways in deploy/.env.
	if err := s.makeKeys(); err != nil {
		return nil, err
	}
	env, err := LoadEnvFile(filepath.Join(opts.Root, EnvExamplePath))
	if err != nil {
		return nil, err
	}
	env["ORDERAPI_TOKEN"] = s.TokenTTL(token.RoleService, "gateway", 30*24*time.Hour)
	if env["POSTGRES_PASSWORD"] == "" {
		env["POSTGRES_PASSWORD"] = "unused-the-stack-creates-its-own-database"
	}
	c, err := LoadCompose(opts.Root, env)
	if err != nil {
		return nil, err
	}
	if len(c.ServicesOf(KindGateway)) == 0 || len(c.ServicesOf(KindOrderAPI)) == 0 || len(c.ServicesOf(KindNginx)) != 1 {
		return nil, errors.New("prodstack: the compose file needs gateways, order APIs and one nginx")
	}
	s.Compose = c
	s.runCtx, s.cancel = context.WithCancel(context.Background())
	return s, s.assignPorts()
}

// makeKeys writes the stack's Ed25519 key pair under Dir/secrets (the
// compose file's deploy/secrets).
func (s *Stack) makeKeys() error {
	privPEM, pubPEM, err := token.GenerateKeyPair()
	if err != nil {
		return err
	}
	dir := filepath.Join(s.Dir, "secrets")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	privFile := filepath.Join(dir, "jwt.pem")
	s.PublicKeyFile = filepath.Join(dir, "jwt.pub.pem")
	if err := os.WriteFile(privFile, privPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(s.PublicKeyFile, pubPEM, 0o644); err != nil {
		return err
	}
	key, err := token.ReadPrivateKey(privFile)
	if err != nil {
		return err
	}
	s.Key = key.(ed25519.PrivateKey)
	return nil
}

// assignPorts gives every compose service a local address and records
// which compose address ("gateway1:8080") it stands for.
func (s *Stack) assignPorts() error {
	for name, svc := range s.Compose.Services {
		if len(svc.Profiles) > 0 {
			continue // optional (observability): this stack does not run it
		}
		if svc.Kind() == KindCurl {
			continue // the one-shot registering merchants: registerMerchants
		}
		inner, err := containerPort(name, svc)
		if err != nil {
			return err
		}
		port, err := launch.FreePort()
		if err != nil {
			return err
		}
		if svc.Kind() == KindNginx && s.opts.Port != 0 {
			port = s.opts.Port
		}
		s.addrs[net.JoinHostPort(name, inner)] = "127.0.0.1:" + strconv.Itoa(port)
	}
	return nil
}

// containerPort is the port a service listens on inside its container.
func containerPort(name string, svc Service) (string, error) {
	switch svc.Kind() {
	case KindRedis:
		return "6379", nil
	case KindPostgres:
		return "5432", nil
	case KindNginx:
		if p := svc.Environment["NGINX_LISTEN"]; p != "" {
			return p, nil
		}
		return "", fmt.Errorf("compose %s: NGINX_LISTEN is not set", name)
	}
	key, err := listenVar(name, svc)
	if err != nil {
		return "", err
	}
	_, port, _ := net.SplitHostPort(svc.Environment[key])
	return port, nil
}

// listenVar finds the service's listen address setting: the one *_ADDR
// variable whose value is a bare ":port" (GATEWAY_ADDR, ORDERAPI_ADDR).
func listenVar(name string, svc Service) (string, error) {
	var found []string
	for k, v := range svc.Environment {
		if host, port, err := net.SplitHostPort(v); strings.HasSuffix(k, "_ADDR") && err == nil && port != "" && (host == "" || host == "0.0.0.0") {
			found = append(found, k)
		}
	}
	if len(found) != 1 {
		return "", fmt.Errorf("compose %s: want one *_ADDR listen setting like \":8080\", found %v", name, found)
	}
	return found[0], nil
}

// local returns the local address standing for a service of the compose
// file.
func (s *Stack) local(name string) string {
	for k, v := range s.addrs {
		if host, _, _ := net.SplitHostPort(k); host == name {
			return v
		}
	}
	return ""
}

func (s *Stack) startRedis(ctx context.Context) error {
	bin := s.opts.RedisBin
	if bin == "" {
		bin = os.Getenv("REDIS_SERVER")
	}
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			return errors.New("redis-server not found: apt-get install -y redis-server (the README's test command does)")
		}
	}
	names := s.Compose.ServicesOf(KindRedis)
	if len(names) != 1 {
		return errors.New("prodstack: the compose file needs one redis service")
	}
	addr := s.local(names[0])
	_, port, _ := net.SplitHostPort(addr)
	dir := filepath.Join(s.Dir, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	p, err := launch.Start(s.runCtx, launch.Spec{
		Name: names[0], Path: bin, LogFile: filepath.Join(s.Dir, names[0]+".log"),
		Args: []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir},
	})
	if err != nil {
		return err
	}
	s.Redis = &Process{Name: names[0], Kind: KindRedis, Addr: addr, URL: "redis://" + addr + "/0", Proc: p}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return waitRedis(wctx, addr)
}

func (s *Stack) startDatabase(ctx context.Context) error {
	if s.opts.Database == "sqlite" {
		s.DatabaseURL = "sqlite://" + filepath.Join(s.Dir, "orders.db")
		return nil
	}
	admin := s.opts.PGAdminURL
	if admin == "" {
		admin = os.Getenv("PG_ADMIN_URL")
	}
	if admin == "" {
		admin = DefaultPGAdminURL
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	u, drop, err := createDatabase(cctx, admin)
	if err != nil {
		return err
	}
	s.DatabaseURL, s.dropDB = u, drop
	return nil
}

func (s *Stack) startOrderAPIs(ctx context.Context) error {
	svcs, err := s.startReplicas(ctx, KindOrderAPI, s.opts.Bins.OrderAPI)
	s.OrderAPIs = svcs
	return err
}

func (s *Stack) startGateways(ctx context.Context) error {
	svcs, err := s.startReplicas(ctx, KindGateway, s.opts.Bins.Gateway)
	s.Gateways = svcs
	return err
}

// startReplicas starts every service of a kind at once, as compose does,
// and waits until each is ready.
func (s *Stack) startReplicas(ctx context.Context, kind, bin string) ([]*Process, error) {
	var svcs []*Process
	for _, name := range s.Compose.ServicesOf(kind) {
		env, err := s.envFor(name)
		if err != nil {
			return svcs, err
		}
		p, err := launch.Start(s.runCtx, launch.Spec{Name: name, Path: bin, Env: env, LogFile: filepath.Join(s.Dir, name+".log")})
		if err != nil {
			return svcs, err
		}
		addr := s.local(name)
		svcs = append(svcs, &Process{
			Name: name, Kind: kind, Node: s.Compose.Services[name].Environment["NODE_ID"],
			Addr: addr, URL: "http://" + addr, Env: env, Proc: p,
		})
	}
	errs := make([]error, len(svcs))
	var wg sync.WaitGroup
	for i, svc := range svcs {
		wg.Go(func() {
			wctx, cancel := context.WithTimeout(ctx, s.opts.ReadyTimeout)
			defer cancel()
			errs[i] = svc.Proc.WaitReady(wctx, svc.URL)
		})
	}
	wg.Wait()
	return svcs, errors.Join(errs...)
}

// envFor is a replica's environment: the compose file's, with its own
// listen address, the local addresses of the services it names, the
// stack's database and secret, then Options.Env.
func (s *Stack) envFor(name string) ([]string, error) {
	svc := s.Compose.Services[name]
	listen, err := listenVar(name, svc)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(svc.Environment))
	for k := range svc.Environment {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	env := make([]string, 0, len(keys)+len(s.opts.Env))
	for _, k := range keys {
		v := svc.Environment[k]
		switch k {
		case listen:
			v = s.local(name)
		case "JWT_PUBLIC_KEY_FILE":
			v = s.PublicKeyFile
		case "DATABASE_URL":
			v = s.DatabaseURL
		default:
			if v, err = s.rewriteURL(name, k, v); err != nil {
				return nil, err
			}
		}
		env = append(env, k+"="+v)
	}
	return append(env, s.opts.Env...), nil
}

// rewriteURL points a URL that names a compose service at its local stand-in.
func (s *Stack) rewriteURL(name, key, v string) (string, error) {
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		return v, nil
	}
	if local, ok := s.addrs[u.Host]; ok {
		u.Host = local
		return u.String(), nil
	}
	if _, isService := s.Compose.Services[u.Hostname()]; isService {
		return "", fmt.Errorf("compose %s: %s=%s names service %s on a port it does not listen on", name, key, v, u.Hostname())
	}
	return v, nil
}

func (s *Stack) startNginx(ctx context.Context) error {
	bin := s.opts.NginxBin
	if bin == "" {
		var err error
		if bin, err = NginxBinary(); err != nil {
			return err
		}
	}
	name := s.Compose.ServicesOf(KindNginx)[0]
	tmpl, err := os.ReadFile(filepath.Join(s.opts.Root, TemplatePath))
	if err != nil {
		return fmt.Errorf("nginx template: %w", err)
	}
	vars := s.nginxVars(name)
	site, err := RenderTemplate(string(tmpl), vars)
	if err != nil {
		return err
	}
	n, err := WriteNginx(bin, filepath.Join(s.Dir, "nginx"), site)
	if err != nil {
		return err
	}
	if err := n.Test(ctx); err != nil {
		return err
	}
	p, err := launch.Start(s.runCtx, launch.Spec{Name: name, Path: bin, Args: n.Args(), LogFile: filepath.Join(s.Dir, name+".log")})
	if err != nil {
		return err
	}
	addr := s.local(name)
	s.Nginx = &Process{Name: name, Kind: KindNginx, Addr: addr, URL: "http://" + addr, Proc: p}
	s.URL = s.Nginx.URL
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return p.WaitHTTP(wctx, s.URL+"/nginx-health")
}

// registerMerchants does what the compose file's merchants service does,
// through nginx with a service token, for its demo merchants and
// Options.Merchants.
func (s *Stack) registerMerchants(ctx context.Context) error {
	ids, err := s.Compose.DemoMerchants()
	if err != nil {
		return err
	}
	return s.RegisterMerchants(ctx, append(ids, s.opts.Merchants...)...)
}

// RegisterMerchants registers merchants with PUT /merchants/{id} through
// nginx, so orders for them are taken (MERCHANTS=registered). Registering
// one again is harmless.
func (s *Stack) RegisterMerchants(ctx context.Context, ids ...string) error {
	tok := s.Token(token.RoleService, "prodstack")
	for _, id := range ids {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.API()+"/merchants/"+url.PathEscape(id), nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("register merchant %s: %w", id, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("register merchant %s: %d %s", id, resp.StatusCode, body)
		}
	}
	return nil
}

// nginxVars are the template values: the compose nginx's environment with
// the listen address and upstreams replaced by the local replicas.
func (s *Stack) nginxVars(name string) map[string]string {
	vars := map[string]string{}
	for k, v := range s.Compose.Services[name].Environment {
		vars[k] = v
	}
	addrs := func(svcs []*Process) []string {
		out := make([]string, len(svcs))
		for i, svc := range svcs {
			out[i] = svc.Addr
		}
		return out
	}
	vars["NGINX_LISTEN"] = s.local(name)
	// Never consulted: the local upstreams are IP literals.
	vars["NGINX_RESOLVER"] = "127.0.0.1"
	vars["GATEWAY_UPSTREAM"] = UpstreamServers(addrs(s.Gateways))
	vars["ORDERAPI_UPSTREAM"] = UpstreamServers(addrs(s.OrderAPIs))
	return vars
}

// Close stops everything in the reverse order of the start, drops the
// database and removes the temporary directory. A replica still running
// that does not exit 0 on SIGTERM is reported as an error, because a
// replica must drain cleanly; one a caller killed or stopped is not.
func (s *Stack) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Stack) close() error {
	var errs []error
	stopAll := func(svcs ...*Process) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, svc := range svcs {
			if svc == nil || svc.Proc == nil {
				continue
			}
			wg.Go(func() {
				running := !svc.Proc.Exited()
				code, err := svc.Proc.Stop(launch.StopTimeout)
				if running && (err != nil || code != 0) {
					mu.Lock()
					errs = append(errs, fmt.Errorf("%s: exit status %d on SIGTERM: %v\n%s", svc.Name, code, err, svc.Proc.LogTail(2048)))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	stopAll(s.Nginx)
	stopAll(s.Gateways...)
	stopAll(s.OrderAPIs...)
	if s.Redis != nil {
		s.Redis.Proc.Kill()
	}
	if s.dropDB != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := s.dropDB(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	s.cancel()
	if s.tempDir {
		if err := os.RemoveAll(s.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
