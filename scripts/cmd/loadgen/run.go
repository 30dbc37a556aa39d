package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"orderpush/scripts/launch"
	"orderpush/scripts/loadgen"
)

// single runs one scenario -runs times.
func (f *flags) single(ctx context.Context, scenario string, stdout, progress io.Writer) error {
	f.shareParallel()
	var st *loadgen.Stack
	if f.stack {
		var err error
		if st, err = f.startStack(ctx); err != nil {
			return err
		}
		defer st.Close()
		if f.db == loadgen.DBPostgres {
			if err := st.StartOrderAPI(ctx, loadgen.DBPostgres); err != nil {
				return err
			}
		}
		if scenario == loadgen.ScenarioAbuse {
			if err := st.SetLimits(ctx, f.abuse.Limits()); err != nil {
				return err
			}
		}
		if f.db == "" {
			f.db = st.Database
		}
	}
	env, err := f.env(st, progress)
	if err != nil {
		return err
	}
	defer env.Close()
	jsonOut, closeJSON, err := f.openJSON()
	if err != nil {
		return err
	}
	defer closeJSON()
	fmt.Fprintf(stdout, "loadgen %s on %s, %s\n", scenario, loadgen.Machine(), loadgen.LoadAvg())
	var all []loadgen.Metric
	for run := 1; run <= f.runs && ctx.Err() == nil; run++ {
		r, err := f.scenario(ctx, env, scenario, run)
		if r != nil {
			loadgen.WriteTable(stdout, r)
			if jsonOut != nil {
				if err := loadgen.WriteJSON(jsonOut, r); err != nil {
					return err
				}
			}
			all = append(all, r.Metrics...)
		}
		if err != nil {
			return err
		}
	}
	if f.runs > 1 {
		fmt.Fprintf(stdout, "\n== median of %d runs (spread min..max)\n", f.runs)
		loadgen.WriteSummary(stdout, loadgen.Aggregate(all))
	}
	return ctx.Err()
}

func (f *flags) scenario(ctx context.Context, e *loadgen.Env, name string, run int) (*loadgen.Report, error) {
	switch name {
	case loadgen.ScenarioIdle:
		return loadgen.Idle(ctx, e, f.idle, run)
	case loadgen.ScenarioLatency:
		c := f.latency
		if c.Mode == loadgen.ModeHTTP && f.db != "" {
			c.Variant = f.db
		}
		if c.Mode == loadgen.ModeHTTP {
			c.Floor = false
		}
		return loadgen.Latency(ctx, e, c, run)
	case loadgen.ScenarioFanout:
		return loadgen.Fanout(ctx, e, f.fanout, run)
	case loadgen.ScenarioOrders:
		c := f.orders
		c.Variant = f.db
		switch f.db {
		case loadgen.DBSQLite:
			c.Target = 1500
		case loadgen.DBPostgres:
			c.Target = 3000
		}
		return loadgen.Orders(ctx, e, c, run)
	case loadgen.ScenarioChurn:
		return loadgen.Churn(ctx, e, f.churn, run)
	case loadgen.ScenarioAbuse:
		c := f.abuse
		c.Variant = f.db
		return loadgen.Abuse(ctx, e, c, run)
	default:
		return nil, fmt.Errorf("unknown scenario %q\n%s", name, usage)
	}
}

// bench starts a local stack and runs everything.
func (f *flags) bench(ctx context.Context, stdout, progress io.Writer, fileLimit uint64) error {
	f.shareParallel()
	if f.quick {
		f.applyQuick()
	}
	st, err := f.startStack(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	jsonOut, closeJSON, err := f.openJSON()
	if err != nil {
		return err
	}
	defer closeJSON()
	var only []string
	if f.only != "" {
		only = strings.Split(f.only, ",")
	}
	fmt.Fprintf(stdout, "loadgen bench: %s; %s; open files %d; results in %s\n", loadgen.Machine(), loadgen.LoadAvg(), fileLimit, f.outDir)
	fmt.Fprintf(stdout, "stack: redis %s, orderapi %s, gateways %s\n", st.RedisURL, st.OrderAPIURL, strings.Join(st.GatewayURLs, " "))
	cfg := loadgen.BenchConfig{
		Runs: f.runs, Only: only, Databases: strings.Split(f.dbs, ","),
		Idle: f.idle, Latency: f.latency, RefRates: f.refRates, Fanout: f.fanout, Orders: f.orders, Churn: f.churn, Abuse: f.abuse,
		Transports: f.transports, Big: f.big, BigSourceIPs: f.bigSrcIPs, SourceIPs: f.srcIPs, WorkerCmd: f.idle.WorkerCmd,
		Seed: f.seed, SeedRates: f.seedRates,
		ProfileDir: filepath.Join(f.outDir, "profiles"), Out: stdout, JSON: jsonOut, Progress: progress,
	}
	_, err = loadgen.Bench(ctx, st, cfg)
	return err
}

// shareParallel gives -parallel to every scenario that opens sockets.
func (f *flags) shareParallel() {
	f.idle.Parallel, f.latency.Parallel, f.fanout.Parallel, f.churn.Parallel, f.abuse.Parallel = f.parallel, f.parallel, f.parallel, f.parallel, f.parallel
	if exe, err := os.Executable(); err == nil {
		f.idle.WorkerCmd = []string{exe}
	}
}

// applyQuick shrinks every scenario to a smoke size.
func (f *flags) applyQuick() {
	f.runs = 1
	f.idle.Sockets, f.idle.Merchants, f.idle.Settle = 200, 40, 200*time.Millisecond
	f.latency.Sockets, f.latency.Merchants, f.latency.Rate, f.latency.Duration = 200, 40, 200, 2*time.Second
	f.fanout.Sockets, f.fanout.Duration = 100, 2*time.Second
	f.orders.Clients, f.orders.Duration = 8, 2*time.Second
	f.churn.Stable, f.churn.Merchants, f.churn.ChurnRate, f.churn.Lifetime = 100, 20, 20, 300*time.Millisecond
	f.churn.Rate, f.churn.Duration = 100, 3*time.Second
	f.abuse.Sockets, f.abuse.Merchants, f.abuse.Rate, f.abuse.Duration = 100, 20, 100, 3*time.Second
	f.abuse.FloodSockets, f.abuse.SilentSockets, f.abuse.ConnectRate, f.abuse.OrderRate = 20, 20, 100, 200
	f.refRates = nil
	if f.seedRates == nil {
		f.seedRates = []float64{200}
	}
	if f.big > 0 {
		f.big = 1000
	}
}

func (f *flags) startStack(ctx context.Context) (*loadgen.Stack, error) {
	if f.outDir == "" {
		root, err := launch.RepoRoot()
		if err != nil {
			return nil, err
		}
		f.outDir = filepath.Join(root, "artifacts", "bench-"+time.Now().Format("20060102-150405"))
	}
	if f.jsonPath == "" {
		f.jsonPath = filepath.Join(f.outDir, "results.jsonl")
	}
	if f.profileDir == "" {
		f.profileDir = filepath.Join(f.outDir, "profiles")
	}
	if err := os.MkdirAll(f.outDir, 0o755); err != nil {
		return nil, err
	}
	sc := loadgen.StackConfig{Dir: f.outDir, RedisURL: f.redisURL, Secret: f.secret}
	if f.binDir != "" {
		sc.Binaries = launch.Binaries{Gateway: filepath.Join(f.binDir, "gateway"), OrderAPI: filepath.Join(f.binDir, "orderapi")}
	}
	st, err := loadgen.StartStack(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("start local stack: %w", err)
	}
	return st, nil
}

// env builds the Env from the stack or from the flags.
func (f *flags) env(st *loadgen.Stack, progress io.Writer) (*loadgen.Env, error) {
	cfg := loadgen.EnvConfig{SourceIPs: f.srcIPs, Progress: progress}
	pprof, pprofAPI := splitList(f.pprof), f.pprofAPI
	if st != nil {
		cfg.Gateways, cfg.OrderAPI, cfg.RedisURL, cfg.Secret, cfg.GatewayPIDs = st.GatewayURLs, st.OrderAPIURL, st.RedisURL, st.Secret(), st.PIDs
		pprof, pprofAPI = st.PprofURLs, st.OrderAPIPprofURL
	} else {
		cfg.Gateways, cfg.OrderAPI, cfg.RedisURL, cfg.Secret = splitList(f.gateways), f.orderapi, f.redisURL, []byte(f.secret)
		for _, p := range splitList(f.pids) {
			n, err := strconv.Atoi(p)
			if err != nil {
				return nil, fmt.Errorf("-pids: %q is not a pid", p)
			}
			cfg.GatewayPIDs = append(cfg.GatewayPIDs, n)
		}
	}
	e, err := loadgen.NewEnv(cfg)
	if err != nil {
		return nil, err
	}
	if st != nil {
		e.ServicePIDs = st.ServicePIDs()
	}
	if f.profileDir != "" && (len(pprof) > 0 || pprofAPI != "") {
		e.Profile = &loadgen.Profiler{Dir: f.profileDir, URLs: pprof, OrderAPI: pprofAPI}
	}
	return e, nil
}

func (f *flags) openJSON() (io.Writer, func(), error) {
	if f.jsonPath == "" {
		return nil, func() {}, nil
	}
	if err := os.MkdirAll(filepath.Dir(f.jsonPath), 0o755); err != nil {
		return nil, nil, err
	}
	fh, err := os.OpenFile(f.jsonPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("-json: %w", err)
	}
	return fh, func() { _ = fh.Close() }, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
