// The gateway binary holds merchant WebSockets and pushes each merchant's
// events to them from Redis (PROTOCOL.md, "Merchant socket"). It reads its
// settings from the environment (see gateway/README.md), serves until
// SIGTERM or SIGINT, then drains: sockets get 1001 and it exits 0 within
// 10 s. A bad setting exits 1 with one line naming it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"orderpush/gateway/internal/server"
	"orderpush/pkg/logging"
)

func main() { os.Exit(run()) }

func run() int {
	cfg, log, err := server.Load(os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway: "+server.OneLine(err))
		return 1
	}
	// The runtime has read GOGC too; Load checked it and holds the
	// gateway's default when it is unset.
	debug.SetGCPercent(cfg.GCPercent)
	logging.RouteRedis(log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := server.New(cfg, log, reg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway: "+server.OneLine(err))
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := srv.Run(ctx); err != nil {
		log.Error("gateway stopped", logging.Err(err))
		return 1
	}
	return 0
}
