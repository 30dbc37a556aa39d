// The prodstack command runs the production topology of
// deploy/docker-compose.yml as local processes: Redis, PostgreSQL (or
// SQLite), two order API replicas, three gateway replicas and nginx in
// front, configured from the same template as the compose nginx. It prints
// where to look and a dashboard link (tokens are EdDSA, signed with a key
// pair made for the run, as deploy/.env.example tells an operator to), then runs until Ctrl-C or SIGTERM and
// tears everything down.
//
//	go run ./scripts/cmd/prodstack              # nginx on 127.0.0.1:8000
//	go run ./scripts/cmd/prodstack -port 0 -db sqlite
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"orderpush/scripts/launch"
	"orderpush/scripts/prodstack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "prodstack:", err)
		os.Exit(1)
	}
}

// run starts the stack, prints the banner, and tears the stack down when
// ctx ends.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("prodstack", flag.ContinueOnError)
	port := fs.Int("port", 8000, "nginx port on 127.0.0.1 (0: a free one)")
	db := fs.String("db", "postgres", "database of the order API: postgres (a private database on PG_ADMIN_URL's server) or sqlite")
	dir := fs.String("dir", "", "directory for logs and the nginx config (default: a temporary one, removed at exit)")
	merchant := fs.String("merchant", "m1", "merchant id of the printed dashboard token (registered at start, like the compose file's DEMO_MERCHANTS)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	root, err := launch.RepoRoot()
	if err != nil {
		return err
	}
	binDir, err := launch.TempDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	fmt.Fprintln(out, "building gateway and orderapi...")
	bins, err := launch.Build(ctx, root, binDir)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "starting redis, the database, 2 order APIs, 3 gateways and nginx...")
	s, err := prodstack.Start(ctx, prodstack.Options{
		Root: root, Bins: bins, Dir: *dir, Port: *port, Database: *db, Merchants: []string{*merchant},
	})
	if err != nil {
		return err
	}
	printBanner(out, s, *merchant)
	<-ctx.Done()
	fmt.Fprintln(out, "\nstopping...")
	if err := s.Close(); err != nil {
		return err
	}
	fmt.Fprintln(out, "stopped")
	return nil
}

func printBanner(w io.Writer, s *prodstack.Stack, merchant string) {
	merchantTok := s.TokenTTL("merchant", merchant, 24*time.Hour)
	memberTok := s.TokenTTL("member", "u1001", 24*time.Hour)
	fmt.Fprintf(w, "\nThe production topology is up behind nginx at %s\n\n", s.URL)
	fmt.Fprintf(w, "  dashboard   %s/?token=%s\n", s.URL, merchantTok)
	fmt.Fprintf(w, "  sockets     %s?token=<merchant token>[&since=<seq>]\n", s.WS())
	fmt.Fprintf(w, "  order API   %s/orders ...\n\n", s.API())
	for _, p := range append(append([]*prodstack.Process{}, s.OrderAPIs...), s.Gateways...) {
		node := ""
		if p.Node != "" {
			node = " node " + p.Node
		}
		fmt.Fprintf(w, "  %-10s  %s%s  log %s\n", p.Name, p.URL, node, p.Proc.LogFile)
	}
	fmt.Fprintf(w, "  %-10s  %s  log %s\n", s.Nginx.Name, s.Nginx.URL, s.Nginx.Proc.LogFile)
	fmt.Fprintf(w, "  %-10s  %s\n", s.Redis.Name, s.Redis.URL)
	fmt.Fprintf(w, "  database    %s\n", dbNote(s.DatabaseURL))
	fmt.Fprintf(w, "  token keys  %s (EdDSA; the services hold only the public key)\n\n", filepath.Dir(s.PublicKeyFile))
	fmt.Fprintf(w, "merchant token (%s):\n  %s\nmember token (u1001):\n  %s\n\n", merchant, merchantTok, memberTok)
	fmt.Fprintf(w, "place an order through the balancer:\n  curl -s -X POST %s/orders -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' -d '{\"merchantId\":\"%s\",\"date\":\"%s\",\"price\":36.5}'\n\n",
		s.API(), memberTok, merchant, time.Now().Format(time.DateOnly))
	fmt.Fprintf(w, "logs are in %s; Ctrl-C stops everything\n", filepath.Clean(s.Dir))
}

func dbNote(u string) string {
	if strings.HasPrefix(u, "sqlite://") {
		return u
	}
	return u + " (created for this run, dropped at exit)"
}
