// The orderapi binary is the order API of PROTOCOL.md: it stores orders in
// SQL (SQLite or PostgreSQL), publishes each merchant event to Redis through
// a transactional outbox, and serves the HTTP API. Settings come from the
// environment (see orderapi/README.md); a bad one stops start-up with exit
// status 1 and a one-line error naming it. SIGTERM or SIGINT drains and
// exits 0.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"orderpush/orderapi/internal/server"
	"orderpush/pkg/logging"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "orderapi: "+strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(1)
	}
}

func run() error {
	cfg, logger, err := server.Load(os.Getenv, os.Stderr)
	if err != nil {
		return err
	}
	logging.RouteRedis(logger)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := server.New(ctx, cfg, server.Deps{Logger: logger, Registry: reg})
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}
