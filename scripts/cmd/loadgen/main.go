// The loadgen command measures the order push system (issue 6): sockets per
// gigabyte, connects per second, order-to-socket latency, fan-out deliveries
// per second and order API throughput, with the floors that make the figures
// comparable across machines.
//
// Usage:
//
//	go run ./scripts/cmd/loadgen <scenario> [flags]
//
// Scenarios: idle, latency, fanout, orders, churn, abuse run one scenario
// against a running stack (-gateways, -orderapi, -redis, -secret or JWT_SECRET) or,
// with -stack, against a local stack it starts; bench starts a local stack
// and runs every scenario -runs times, printing per-run tables and the
// medians (scripts/bench.sh). Only abuse runs with the limits on; a local
// stack started for the others has them off. Run with -h after a scenario
// for its flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"orderpush/scripts/loadgen"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

const usage = `usage: loadgen <idle|latency|fanout|orders|churn|abuse|bench> [flags]   (loadgen <scenario> -h for flags)`

// flags holds every flag; each scenario reads the ones it needs.
type flags struct {
	gateways, orderapi, redisURL, secret, pids, pprof, pprofAPI, jsonPath, only, dbs, profileDir, outDir, binDir string
	srcIPs, runs, parallel, big, bigSrcIPs                                                                       int
	stack, quiet, quick                                                                                          bool

	idle       loadgen.IdleConfig
	latency    loadgen.LatencyConfig
	fanout     loadgen.FanoutConfig
	orders     loadgen.OrdersConfig
	churn      loadgen.ChurnConfig
	abuse      loadgen.AbuseConfig
	db         string
	worker     loadgen.WorkerSpec
	refRates   []float64
	transports []string
	seed       loadgen.SeedConfig
	seedRates  []float64
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return errors.New(usage)
	}
	scenario := args[0]
	var f flags
	fs := flag.NewFlagSet("loadgen "+scenario, flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.register(fs, scenario)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if f.secret == "" {
		f.secret = os.Getenv("JWT_SECRET")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	limit, err := loadgen.RaiseFileLimit(1 << 20)
	if err != nil {
		fmt.Fprintln(stderr, "loadgen: cannot raise the open file limit:", err)
	}
	var progress io.Writer = stderr
	if f.quiet {
		progress = nil
	}
	if scenario == "bench" {
		return f.bench(ctx, stdout, progress, limit)
	}
	if scenario == "idle-worker" {
		return loadgen.RunIdleWorker(ctx, f.worker, []byte(f.secret), os.Stdin, stdout)
	}
	return f.single(ctx, scenario, stdout, progress)
}

func (f *flags) register(fs *flag.FlagSet, scenario string) {
	if scenario == "idle-worker" {
		// Internal: one process of a multi-process idle run (-procs).
		w := &f.worker
		fs.Func("gateways", "gateway URLs", func(s string) error { w.Gateways = splitList(s); return nil })
		fs.StringVar(&w.RunID, "run", "", "run id of the parent")
		fs.IntVar(&w.Merchants, "merchants", 1, "merchants")
		fs.IntVar(&w.First, "first", 0, "global index of the first socket")
		fs.IntVar(&w.Sockets, "sockets", 0, "sockets to open")
		fs.IntVar(&w.Parallel, "parallel", 32, "dials in flight")
		fs.IntVar(&w.SourceIPs, "srcips", 1, "source addresses")
		fs.IntVar(&w.SourceBase, "srcbase", 0, "first source address offset")
		fs.StringVar(&w.Transport, "transport", loadgen.TransportWS, "transport")
		return
	}
	fs.StringVar(&f.gateways, "gateways", "", "comma-separated gateway WebSocket URLs (ws://127.0.0.1:8080/ws,...), used round-robin")
	fs.StringVar(&f.orderapi, "orderapi", "", "order API base URL (http://127.0.0.1:8090)")
	fs.StringVar(&f.redisURL, "redis", "", "the stack's REDIS_URL, for publishing frames straight to Redis and the pub/sub floor")
	fs.StringVar(&f.secret, "secret", "", "JWT_SECRET of the stack (default $JWT_SECRET)")
	fs.StringVar(&f.pids, "pids", "", "comma-separated local pids of the gateways, in -gateways order (RSS per socket)")
	fs.StringVar(&f.pprof, "pprof", "", "comma-separated pprof base URLs of the gateways (PPROF_ADDR), in -gateways order")
	fs.StringVar(&f.pprofAPI, "pprof-orderapi", "", "pprof base URL of the order API (its PPROF_ADDR)")
	fs.StringVar(&f.profileDir, "profile-dir", "", "save gateway and order API CPU/heap profiles of measured phases here (needs -pprof, -pprof-orderapi or -stack)")
	fs.StringVar(&f.jsonPath, "json", "", "append results as JSON lines to this file")
	fs.IntVar(&f.srcIPs, "srcips", 1, "spread sockets over this many source addresses 127.0.0.1..N (about 28k sockets each)")
	runs := 1
	if scenario == "bench" {
		runs = 3
	}
	fs.IntVar(&f.runs, "runs", runs, "repeat the scenario and print medians")
	fs.IntVar(&f.parallel, "parallel", 256, "dials in flight while opening sockets")
	fs.BoolVar(&f.stack, "stack", false, "start a local stack (Redis, order API, 2 gateways) instead of using the URLs")
	fs.StringVar(&f.binDir, "bin", "", "with -stack or bench: use the gateway and orderapi binaries in this directory instead of building them")
	fs.StringVar(&f.outDir, "out", "", "with -stack or bench: directory for logs, profiles and results (default artifacts/bench-<time>)")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress lines on stderr")
	switch scenario {
	case "idle", "latency", "fanout":
		fs.Func("transport", "the sockets' transport: ws (default), sse or socketio", func(v string) error {
			ts, err := loadgen.ParseTransports(v)
			if err != nil || len(ts) != 1 {
				return fmt.Errorf("want one of %s", strings.Join(loadgen.AllTransports, ", "))
			}
			f.idle.Transport, f.latency.Transport, f.fanout.Transport = ts[0], ts[0], ts[0]
			return nil
		})
	case "bench":
		fs.Func("transports", "transports measured side by side in idle, latency (redis) and fanout, ratios to the first (default ws; all: "+
			strings.Join(loadgen.AllTransports, ",")+")", func(v string) error {
			ts, err := loadgen.ParseTransports(v)
			f.transports = ts
			return err
		})
	}
	switch scenario {
	case "idle", "bench":
		fs.IntVar(&f.idle.Sockets, "sockets", 10000, "idle: sockets to open")
		fs.IntVar(&f.idle.Merchants, "merchants", 2000, "idle: merchants the sockets belong to")
		fs.BoolVar(&f.idle.Verify, "verify", true, "idle: publish one order per merchant and check every socket gets it")
		fs.DurationVar(&f.idle.Settle, "settle", 2*time.Second, "idle: wait after the last hello before reading RSS")
	}
	if scenario == "idle" {
		fs.BoolVar(&f.idle.Fresh, "fresh", false, "idle: merchants without any event yet (the gateway asks the order API for their state)")
		fs.IntVar(&f.idle.Procs, "procs", 1, "idle: spread the sockets over this many load generator processes (each may open at most RLIMIT_NOFILE files)")
	}
	switch scenario {
	case "latency", "bench":
		fs.IntVar(&f.latency.Sockets, "lat-sockets", 10000, "latency: sockets")
		fs.IntVar(&f.latency.Merchants, "lat-merchants", 2000, "latency: merchants")
		fs.Float64Var(&f.latency.Rate, "rate", 2000, "latency: orders per second")
		fs.DurationVar(&f.latency.Duration, "duration", 20*time.Second, "latency: length of the paced phase")
		fs.IntVar(&f.latency.Workers, "workers", 64, "latency: requests in flight at most")
		fs.BoolVar(&f.latency.Batch, "batch", false, "latency: connect with ?batch=1")
		fs.BoolVar(&f.latency.NoReceipts, "no-receipts", false, "latency: sockets send no ack or seen (HTTP mode); bench with -seed runs ours at the seed's rates so")
	}
	if scenario == "latency" {
		fs.StringVar(&f.latency.Mode, "mode", loadgen.ModeRedis, "latency: redis (frames straight to Redis) or http (POST /orders)")
		fs.BoolVar(&f.latency.Floor, "floor", true, "latency: measure the raw Redis pub/sub floor and the publish script's floor first (needs -redis)")
		fs.StringVar(&f.db, "db", "", "latency: label for the database behind the order API (sqlite, postgres); with -stack, which one to start")
	}
	switch scenario {
	case "fanout", "bench":
		fs.IntVar(&f.fanout.Sockets, "fan-sockets", 2000, "fanout: sockets of the one merchant")
		fs.DurationVar(&f.fanout.Duration, "fan-duration", 10*time.Second, "fanout: length of the publishing phase")
		fs.IntVar(&f.fanout.Window, "window", 128, "fanout: frames in flight at most (keep below SEND_QUEUE_SIZE)")
		fs.BoolVar(&f.fanout.Batch, "fan-batch", true, "fanout: connect with ?batch=1 (the floor coalesces likewise)")
	}
	if scenario == "fanout" {
		fs.BoolVar(&f.fanout.Floor, "floor", true, "fanout: measure the in-process WebSocket floor first")
		fs.IntVar(&f.fanout.Limit, "limit", 1_000_000, "fanout: frames at most")
	}
	switch scenario {
	case "orders", "bench":
		fs.IntVar(&f.orders.Clients, "clients", 64, "orders: concurrent clients")
		fs.DurationVar(&f.orders.Duration, "orders-duration", 10*time.Second, "orders: length of the phase")
	}
	if scenario == "orders" {
		fs.StringVar(&f.db, "db", "", "orders: label for the database behind the order API; with -stack, which one to start")
	}
	switch scenario {
	case "churn", "bench":
		fs.IntVar(&f.churn.Stable, "stable", 2000, "churn: sockets that stay")
		fs.IntVar(&f.churn.Merchants, "churn-merchants", 200, "churn: merchants")
		fs.Float64Var(&f.churn.ChurnRate, "churn-rate", 200, "churn: sockets opened (and later closed) per second")
		fs.DurationVar(&f.churn.Lifetime, "lifetime", time.Second, "churn: how long a churning socket stays")
		fs.Float64Var(&f.churn.Rate, "churn-order-rate", 500, "churn: orders per second")
		fs.DurationVar(&f.churn.Duration, "churn-duration", 15*time.Second, "churn: length of the phase")
	}
	if scenario == "churn" {
		fs.StringVar(&f.churn.Mode, "mode", loadgen.ModeHTTP, "churn: http or redis")
	}
	switch scenario {
	case "abuse", "bench":
		a := &f.abuse
		fs.IntVar(&a.Sockets, "abuse-sockets", 1000, "abuse: honest sockets in each phase")
		fs.IntVar(&a.Merchants, "abuse-merchants", 200, "abuse: honest merchants in each phase (at most 50 sockets each)")
		fs.Float64Var(&a.Rate, "abuse-rate", 500, "abuse: honest orders per second (POST /orders)")
		fs.DurationVar(&a.Duration, "abuse-duration", 15*time.Second, "abuse: length of each phase (without, then with the attacks)")
		fs.Func("attacks", "abuse: attacks run together, comma-separated (default all: "+strings.Join(loadgen.AllAttacks, ",")+")", func(v string) error {
			a.Attacks = splitList(v)
			return nil
		})
		fs.Float64Var(&a.ConnectRate, "connect-flood-rate", 500, "abuse: upgrade attempts per second from the one flooding address")
		fs.IntVar(&a.FloodSockets, "flood-sockets", 200, "abuse: sockets flooding frames")
		fs.Float64Var(&a.FloodRate, "flood-rate", 100, "abuse: frames per second per flooding socket")
		fs.Float64Var(&a.OrderRate, "order-flood-rate", 1000, "abuse: POST /orders per second with the one flooding member token")
		fs.IntVar(&a.SilentSockets, "silent-sockets", 200, "abuse: sockets that never read after their hello")
		fs.DurationVar(&a.PingInterval, "ping-interval", 2*time.Second, "abuse: the gateways' PING_INTERVAL (with -stack or bench)")
		fs.DurationVar(&a.PingTimeout, "ping-timeout", 5*time.Second, "abuse: the gateways' PING_TIMEOUT (with -stack or bench)")
	}
	if scenario == "bench" {
		fs.StringVar(&f.only, "only", "", "comma-separated scenarios to run (default all: "+strings.Join(loadgen.AllScenarios, ",")+")")
		fs.StringVar(&f.dbs, "dbs", "sqlite,postgres", "order API databases to measure")
		fs.IntVar(&f.big, "big", 0, "also open this many idle sockets once (e.g. 100000) and check each still gets its orders")
		fs.IntVar(&f.bigSrcIPs, "big-srcips", 0, "source addresses per load generator process in the -big run (each process gets its own)")
		fs.StringVar(&f.seed.Dir, "seed", "", "bench: also measure the seed socket.io stack started from this directory (a copy of it with node_modules; see scripts/BENCHMARKS.md)")
		fs.Func("seed-rates", "bench: order rates of the seed stack's latency runs, and of ours through POST /orders beside them, comma-separated (default 500,2000)", rateList(&f.seedRates, "-seed-rates"))
		fs.Func("ref-rates", "further frame rates straight to Redis to measure for reference, comma-separated (default 500)", rateList(&f.refRates, "-ref-rates"))
		f.refRates = []float64{500}
		fs.BoolVar(&f.quick, "quick", false, "tiny sizes: a smoke run of every scenario in about a minute")
	}
}

// rateList parses a comma-separated list of positive rates into *dst.
func rateList(dst *[]float64, flag string) func(string) error {
	return func(v string) error {
		*dst = nil
		for _, p := range splitList(v) {
			x, err := strconv.ParseFloat(p, 64)
			if err != nil || x <= 0 {
				return fmt.Errorf("%s: %q is not a rate", flag, p)
			}
			*dst = append(*dst, x)
		}
		return nil
	}
}
