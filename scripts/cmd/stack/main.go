// The stack command runs the whole system locally with one command:
//
//	go run ./scripts/cmd/stack
//
// It builds gateway and orderapi, starts orderapi on SQLite and two gateway
// replicas on one Redis (REDIS_URL when set; else a private redis-server
// from PATH; else an in-process miniredis, so a machine with only Go runs
// it), waits until every process is ready, then prints the addresses, the
// dashboard link, a merchant and a member token and copy-paste commands to
// place an order and to watch it arrive. Ctrl-C (or SIGTERM) stops
// everything. It is a development stack: its order API runs MERCHANTS=open
// (any merchant id takes orders, no registration), unlike the compose and
// process stacks (scripts/cmd/prodstack), which run registered.
//
//	go run ./scripts/cmd/stack watch -token <merchant JWT> ws://127.0.0.1:8080/ws
//
// prints the frames of one merchant socket, one per line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "watch" {
		err = watch(ctx, os.Args[2:], os.Stdout, os.Stderr)
	} else {
		err = runStack(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	}
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "stack:", err)
		}
		os.Exit(1)
	}
}

// logf writes a progress line to w.
func logf(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "stack: "+format+"\n", args...)
}
