package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Scenario names.
const (
	ScenarioIdle    = "idle"
	ScenarioLatency = "latency"
	ScenarioFanout  = "fanout"
	ScenarioOrders  = "orders"
	ScenarioChurn   = "churn"
	ScenarioAbuse   = "abuse"
	// ScenarioBig is the one-off large idle run alone (-only big -big N).
	ScenarioBig = "big"
)

// AllScenarios in the order the bench runs them.
var AllScenarios = []string{ScenarioIdle, ScenarioLatency, ScenarioFanout, ScenarioOrders, ScenarioChurn, ScenarioAbuse}

// BenchConfig is the whole benchmark of issue 6 against a local stack.
type BenchConfig struct {
	Runs      int      // repetitions of every scenario; figures are medians
	Only      []string // scenarios to run, all when empty
	Databases []string // order API databases for latency/http and orders
	Idle      IdleConfig
	Latency   LatencyConfig // Mode and Variant are set per phase
	// RefRates are further rates of frames straight to Redis, for reference
	// (issue 6 quotes other servers at 500/s too); no target applies.
	RefRates []float64
	Fanout   FanoutConfig
	Orders   OrdersConfig
	Churn    ChurnConfig
	// Transports are measured side by side in every run's idle, latency
	// (frames straight to Redis) and fanout scenarios, in this order; ws
	// alone when empty. The floors are measured with the first.
	Transports []string
	Abuse      AbuseConfig // runs on the last of Databases, with its limits on
	// Big is the socket count of the one-off large idle run (100k); 0 skips.
	// One process may not hold more than its open-file limit, so the run
	// uses enough gateway replicas and load generator processes (WorkerCmd)
	// to stay under it on both sides.
	// Seed is the seed stack measured next to ours (Dir "" for none), at
	// SeedRates orders/s (our order API is measured at those rates too).
	Seed         SeedConfig
	SeedRates    []float64
	Big          int
	BigSourceIPs int
	WorkerCmd    []string
	SourceIPs    int
	ProfileDir   string    // gateway and order API CPU and heap profiles, "" for none
	Out          io.Writer // tables
	JSON         io.Writer // JSON lines, nil for none
	Progress     io.Writer
}

// Gateways is the stack's replica count.
func (c *BenchConfig) Gateways(st *Stack) int { return len(st.GatewayURLs) }

func (c *BenchConfig) want(s string) bool { return len(c.Only) == 0 || slices.Contains(c.Only, s) }

// Bench runs every selected scenario cfg.Runs times against st, interleaving
// the runs (so a noisy minute spoils one sample of each, not all samples of
// one), and returns the aggregated rows. A failing scenario does not stop the
// others; the error returned joins every failure.
func Bench(ctx context.Context, st *Stack, cfg BenchConfig) ([]Row, error) {
	if cfg.Runs <= 0 {
		cfg.Runs = 3
	}
	if len(cfg.Databases) == 0 {
		cfg.Databases = []string{DBSQLite, DBPostgres}
	}
	if len(cfg.Transports) == 0 {
		cfg.Transports = []string{TransportWS}
	}
	var all []Metric
	var errs []error
	record := func(r *Report, err error) {
		if r == nil {
			r = &Report{Scenario: "error"}
		}
		if err != nil {
			r.Notef("ERROR: %v", err)
			errs = append(errs, fmt.Errorf("%s/%s run %d: %w", r.Scenario, r.Variant, r.Run, err))
		}
		WriteTable(cfg.Out, r)
		if cfg.JSON != nil {
			_ = WriteJSON(cfg.JSON, r)
		}
		all = append(all, r.Metrics...)
	}
	env := func() (*Env, error) {
		e, err := NewEnv(EnvConfig{Gateways: st.GatewayURLs, OrderAPI: st.OrderAPIURL, RedisURL: st.RedisURL,
			Secret: st.Secret(), GatewayPIDs: st.PIDs, SourceIPs: cfg.SourceIPs, Progress: cfg.Progress})
		if err != nil {
			return nil, err
		}
		e.ServicePIDs = st.ServicePIDs()
		if cfg.ProfileDir != "" {
			e.Profile = &Profiler{Dir: cfg.ProfileDir, URLs: st.PprofURLs, OrderAPI: st.OrderAPIPprofURL}
		}
		return e, nil
	}
	// restart gives the next idle run fresh gateway processes (an RSS
	// baseline must be a new process's) and a new Env for them.
	restart := func(e *Env) (*Env, error) {
		if err := st.RestartGateways(ctx); err != nil {
			return e, err
		}
		e.Close()
		return env()
	}
	var seed *SeedStack
	if cfg.Seed.Dir != "" && (cfg.want(ScenarioIdle) || cfg.want(ScenarioLatency)) {
		var err error
		if seed, err = StartSeed(ctx, cfg.Seed, st.RedisURL, string(st.Secret()), st.cfg.Dir); err != nil {
			return nil, err
		}
		defer seed.Close()
	}
	loop := false
	for _, sc := range AllScenarios {
		loop = loop || cfg.want(sc)
	}
	for run := 1; loop && run <= cfg.Runs && ctx.Err() == nil; run++ {
		fmt.Fprintf(cfg.Out, "\n######## run %d of %d (%s)\n", run, cfg.Runs, LoadAvg())
		if cfg.want(ScenarioIdle) {
			// Fresh gateways: an RSS baseline must be a new process's, not
			// one whose heap earlier runs already grew.
			if err := st.RestartGateways(ctx); err != nil {
				return nil, err
			}
		}
		if st.Database != DBSQLite {
			if err := st.StartOrderAPI(ctx, DBSQLite); err != nil {
				return nil, err
			}
		}
		e, err := env()
		if err != nil {
			return nil, err
		}
		if cfg.want(ScenarioIdle) {
			c := cfg.Idle
			c.Verify, c.Fresh = true, false
			for i, t := range cfg.Transports {
				if i > 0 {
					if e, err = restart(e); err != nil {
						return nil, err
					}
				}
				c.Transport = t
				record(Idle(ctx, e, c, run))
			}
			// Merchants without any order yet: their first socket makes the
			// gateway ask the order API for the state Redis lacks.
			if e, err = restart(e); err != nil {
				return nil, err
			}
			c.Fresh, c.Transport = true, TransportWS
			record(Idle(ctx, e, c, run))
			if seed != nil {
				record(SeedIdle(ctx, e, seed, cfg.Idle, run))
			}
		}
		if cfg.want(ScenarioLatency) {
			c := cfg.Latency
			c.Mode, c.Variant = ModeRedis, ModeRedis
			for i, t := range cfg.Transports {
				c.Transport, c.Floor = t, i == 0
				record(Latency(ctx, e, c, run))
			}
			c.Transport, c.Floor = TransportWS, true
			for _, rate := range cfg.RefRates {
				c.Rate, c.Variant, c.Reference = rate, fmt.Sprintf("redis@%g", rate), true
				record(Latency(ctx, e, c, run))
			}
			for _, rate := range cfg.seedRates(seed) {
				c := cfg.Latency
				c.Rate, c.Variant = rate, fmt.Sprintf("seed@%g", rate)
				record(SeedLatency(ctx, e, seed, c, run))
			}
		}
		if cfg.want(ScenarioFanout) {
			for i, t := range cfg.Transports {
				c := cfg.Fanout
				c.Floor, c.Transport = i == 0, t
				record(Fanout(ctx, e, c, run))
			}
		}
		for _, db := range cfg.Databases {
			if !cfg.want(ScenarioLatency) && !cfg.want(ScenarioOrders) && !(cfg.want(ScenarioChurn) && db == DBSQLite) {
				continue
			}
			if st.Database != db {
				if err := st.StartOrderAPI(ctx, db); err != nil {
					record(nil, fmt.Errorf("order API on %s: %w", db, err))
					continue
				}
				e.ServicePIDs = st.ServicePIDs()
			}
			if cfg.want(ScenarioLatency) {
				c := cfg.Latency
				c.Mode, c.Variant, c.Floor = ModeHTTP, db, false
				record(Latency(ctx, e, c, run))
				// The seed stack's rates through our POST /orders too,
				// without receipts: the seed has none, so these are the
				// like-for-like figures.
				for _, rate := range cfg.seedRates(seed) {
					c := c
					c.Rate, c.Variant, c.Reference, c.NoReceipts = rate, fmt.Sprintf("%s@%g", db, rate), true, true
					record(Latency(ctx, e, c, run))
				}
			}
			if cfg.want(ScenarioOrders) {
				c := cfg.Orders
				c.Variant = db
				c.Target = 1500
				if db == DBPostgres {
					c.Target = 3000
				}
				record(Orders(ctx, e, c, run))
			}
			if cfg.want(ScenarioChurn) && db == DBSQLite {
				record(Churn(ctx, e, cfg.Churn, run))
			}
		}
		if cfg.want(ScenarioAbuse) {
			// The only scenario with the limits on; the next run's
			// capacity figures get them off again.
			if err := st.SetLimits(ctx, cfg.Abuse.Limits()); err != nil {
				return nil, err
			}
			e.Close()
			if e, err = env(); err != nil {
				return nil, err
			}
			c := cfg.Abuse
			c.Variant = st.Database
			record(Abuse(ctx, e, c, run))
			if err := st.SetLimits(ctx, CapacityLimits); err != nil {
				return nil, err
			}
		}
		e.Close()
	}
	if cfg.Big > 0 && (cfg.want(ScenarioIdle) || cfg.want(ScenarioBig)) && ctx.Err() == nil {
		perProc := int(fileLimit()) - 2000 // room for Redis, HTTP and log files
		if perProc < 1000 {
			return nil, fmt.Errorf("big idle run: open-file limit %d is too small", fileLimit())
		}
		gws := max(cfg.Gateways(st), (cfg.Big+perProc-1)/perProc)
		st.SetGateways(gws)
		if err := st.RestartGateways(ctx); err != nil {
			return nil, err
		}
		fmt.Fprintf(cfg.Out, "\n######## %d idle sockets over %d gateways (open-file limit %d per process)\n", cfg.Big, gws, fileLimit())
		procs := (cfg.Big + perProc - 1) / perProc
		saved := cfg.SourceIPs
		// Each source address has about 28k ephemeral ports: one process
		// holding many sockets needs several; with many processes each
		// gets its own anyway.
		cfg.SourceIPs = max(1, cfg.BigSourceIPs)
		if procs == 1 {
			cfg.SourceIPs = max(cfg.SourceIPs, (cfg.Big+24999)/25000)
		}
		e, err := env()
		cfg.SourceIPs = saved
		if err != nil {
			return nil, err
		}
		c := cfg.Idle
		c.Sockets, c.Verify = cfg.Big, true
		c.Procs, c.WorkerCmd = procs, cfg.WorkerCmd
		c.Drain = max(c.Drain, 60*time.Second)
		record(Idle(ctx, e, c, 1))
		e.Close()
	}
	rows := Aggregate(all)
	fmt.Fprintf(cfg.Out, "\n######## summary: median of %d runs (spread min..max)\n", cfg.Runs)
	WriteSummary(cfg.Out, rows)
	if len(cfg.Transports) > 1 {
		fmt.Fprintf(cfg.Out, "\n######## transports side by side: median of %d runs (spread min..max), ratio to %s\n", cfg.Runs, cfg.Transports[0])
		WriteTransports(cfg.Out, rows, cfg.Transports, cfg.Fanout.Batch)
	}
	return rows, errors.Join(append(errs, ctx.Err())...)
}

// seedRates are the latency rates of the seed stack, none without one.
func (c *BenchConfig) seedRates(seed *SeedStack) []float64 {
	if seed == nil {
		return nil
	}
	if len(c.SeedRates) == 0 {
		return []float64{500, 2000}
	}
	return c.SeedRates
}

// Machine describes where the figures were taken.
func Machine() string {
	var b strings.Builder
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	fmt.Fprintf(&b, "%s, %d CPUs, %s, %s %s/%s", model, runtime.NumCPU(), memTotal(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return b.String()
}

func memTotal() string {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown memory"
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return fmt.Sprintf("%.1f GiB RAM", float64(kb)/(1<<20))
		}
	}
	return "unknown memory"
}

// LoadAvg is the 1, 5 and 15 minute load average, to show how noisy a run was.
func LoadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "load unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "load unknown"
	}
	return "load " + strings.Join(f[:3], " ")
}
