package loadgen

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// IdleConfig sizes the idle scenario.
type IdleConfig struct {
	Sockets   int           // total sockets, round-robin over the gateways
	Merchants int           // sockets k belongs to merchant k % Merchants
	Parallel  int           // dials in flight
	Settle    time.Duration // pause after the last hello before reading RSS
	// Verify publishes one event per merchant straight to Redis after the
	// sockets are open and checks that every socket gets it.
	Verify bool
	// Fresh leaves the merchants without any event before they connect, so
	// Redis has no state for them and a gateway asks the order API for it
	// on each merchant's first socket. By default every merchant gets one
	// event first, as a merchant with order history has.
	Fresh bool
	Drain time.Duration // how long Verify waits for the last frame
	// Procs > 1 spreads the sockets over that many worker processes of the
	// load generator (WorkerCmd), for more sockets than one process may
	// open (RLIMIT_NOFILE).
	Procs     int
	WorkerCmd []string
	Transport string // TransportWS (default), TransportSSE or TransportSocketIO
}

func (c *IdleConfig) defaults() {
	c.Sockets = cmp0(c.Sockets, 10000)
	c.Merchants = cmp0(c.Merchants, 2000)
	c.Parallel = cmp0(c.Parallel, 256)
	if c.Settle <= 0 {
		c.Settle = 2 * time.Second
	}
	if c.Drain <= 0 {
		c.Drain = 30 * time.Second
	}
}

// cmp0 is v, or def when v is not positive.
func cmp0(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// gatewayStat is what a local gateway costs at one moment.
type gatewayStat struct {
	RSS        int64   // bytes, -1 when unknown
	Goroutines float64 // -1 when unknown
	// From the Go collector on /metrics, -1 when unknown: where the RSS goes.
	HeapInuse, StackInuse float64
}

func (e *Env) gatewayStats(ctx context.Context) []gatewayStat {
	out := make([]gatewayStat, len(e.Gateways))
	for i := range e.Gateways {
		out[i] = gatewayStat{RSS: -1, Goroutines: -1, HeapInuse: -1, StackInuse: -1}
		if i < len(e.GatewayPIDs) && e.GatewayPIDs[i] > 0 {
			if r, err := RSS(e.GatewayPIDs[i]); err == nil {
				out[i].RSS = r
			}
		}
		vals, err := MetricValues(ctx, e.HTTP, e.MetricsURL(i), "go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes")
		if err == nil {
			out[i].Goroutines, out[i].HeapInuse, out[i].StackInuse = vals[0], vals[1], vals[2]
		}
	}
	return out
}

// Idle opens cfg.Sockets sockets and reports how fast they opened and what
// each costs the gateways: RSS (from /proc/<pid>/status of local gateways,
// minus the baseline before connecting) and goroutines (go_goroutines on
// the gateway's /metrics).
func Idle(ctx context.Context, e *Env, cfg IdleConfig, run int) (*Report, error) {
	cfg.defaults()
	if err := e.NeedGateways(); err != nil {
		return nil, err
	}
	if cfg.Verify {
		if err := e.NeedRedis(); err != nil {
			return nil, err
		}
	}
	e.NextRun() // fresh merchants: no history from an earlier scenario
	r := &Report{Scenario: "idle", Run: run, Started: time.Now()}
	if cfg.Sockets >= 50000 {
		r.Variant = strconv.Itoa(cfg.Sockets/1000) + "k"
	}
	if cfg.Fresh {
		r.Variant = strings.TrimPrefix(r.Variant+"-fresh", "-")
	}
	r.Variant = transportVariant(r.Variant, cfg.Transport)
	merchants := make([]string, cfg.Merchants)
	for i := range merchants {
		merchants[i] = e.MerchantID("i", i)
	}
	used := merchants[:min(len(merchants), cfg.Sockets)]
	var seq uint64
	if !cfg.Fresh {
		if err := e.NeedRedis(); err != nil {
			return nil, err
		}
		seq = 1
		if n := publishEach(ctx, e, used, seq); n > 0 {
			return r, fmt.Errorf("idle: %d of %d seed publishes failed", n, len(used))
		}
	}
	var h idleHolder
	if cfg.Procs > 1 {
		h = &procHolder{e: e, cfg: cfg}
		r.Notef("sockets held by %d load generator processes (open-file limit %d each)", cfg.Procs, fileLimit())
	} else {
		fl, err := NewFleet(e, merchants, FleetOptions{Transport: cfg.Transport})
		if err != nil {
			return nil, err
		}
		h = &fleetHolder{fl: fl}
	}
	defer h.close()
	before := e.gatewayStats(ctx)
	// A CPU profile of the first seconds of opening: the connect path.
	name := strings.TrimSuffix("idle-"+r.Variant, "-")
	wait := e.Profile.CPU(ctx, fmt.Sprintf("%s-connect-run%d", name, run), 3*time.Second)
	cpu := e.startCPU()
	cpu.workers = h.pids
	res, err := h.open(ctx, cfg.Sockets, cfg.Parallel)
	if err != nil {
		return r, err
	}
	if gw := cpu.addCPU(r, "connect_"); gw >= 0 && res.Opened > 0 {
		r.Add("connect_gateway_cpu_per_connect", float64(gw.Microseconds())/float64(res.Opened), "us")
	}
	r.Add("sockets", float64(res.Opened), "")
	r.Add("failed", float64(res.Failed), "").Target = &Target{Op: "<=", Value: 0}
	rate := float64(res.Opened) / res.Elapsed.Seconds()
	r.Add("connects_per_s", rate, "/s").Target = &Target{Op: ">=", Value: 4000}
	cs := res.Connects.Summary()
	r.Add("connect_p50", ms(cs.P50), "ms")
	r.Add("connect_p99", ms(cs.P99), "ms")
	for k, n := range res.Errors {
		r.Notef("%d connects failed: %s", n, k)
	}
	if res.Opened == 0 {
		return r, fmt.Errorf("idle: no socket opened")
	}
	waitTick(ctx, cfg.Settle)
	for _, f := range wait() {
		r.Notef("cpu profile %s", f)
	}
	after := e.gatewayStats(ctx)
	for _, f := range e.Profile.Heap(ctx, fmt.Sprintf("%s-run%d", name, run)) {
		r.Notef("heap profile %s", f)
	}
	addMemory(r, e, before, after, res.PerGateway)
	if cfg.Verify {
		if err := verifyIdle(ctx, e, h, used, seq+1, res.Opened, cfg, r); err != nil {
			return r, err
		}
	}
	if d := h.dropped(); len(d) > 0 {
		r.Notef("sockets closed by the server: %v", d)
	}
	return r, nil
}

// addMemory reports RSS and goroutines per socket from the gateway stats
// taken before opening and after settling.
func addMemory(r *Report, e *Env, before, after []gatewayStat, perGW []int) {
	var rssSum int64
	var rssSocks int
	var gorSum, heapSum, stackSum float64
	var gorSocks, memSocks int
	for i := range e.Gateways {
		if i >= len(perGW) || perGW[i] == 0 {
			continue
		}
		if before[i].RSS >= 0 && after[i].RSS >= 0 {
			d := after[i].RSS - before[i].RSS
			rssSum += d
			rssSocks += perGW[i]
			if len(e.Gateways) <= 4 {
				r.Add("rss_per_socket_gw"+strconv.Itoa(i), float64(d)/float64(perGW[i])/1024, "KiB")
			}
		}
		if before[i].Goroutines >= 0 && after[i].Goroutines >= 0 {
			gorSum += after[i].Goroutines - before[i].Goroutines
			gorSocks += perGW[i]
		}
		if before[i].HeapInuse >= 0 && after[i].HeapInuse >= 0 && before[i].StackInuse >= 0 && after[i].StackInuse >= 0 {
			heapSum += after[i].HeapInuse - before[i].HeapInuse
			stackSum += after[i].StackInuse - before[i].StackInuse
			memSocks += perGW[i]
		}
	}
	if rssSocks > 0 {
		r.Add("rss_per_socket", float64(rssSum)/float64(rssSocks)/1024, "KiB").Target = &Target{Op: "<=", Value: 24}
		var total int64
		for i := range e.Gateways {
			total += max(0, after[i].RSS)
		}
		r.Add("rss_gateways", float64(total)/(1<<20), "MiB")
	} else {
		r.Notef("no local gateway pid given (-pids): RSS per socket not measured")
	}
	if gorSocks > 0 {
		r.Add("goroutines_per_socket", gorSum/float64(gorSocks), "")
	}
	if memSocks > 0 {
		r.Add("heap_inuse_per_socket", heapSum/float64(memSocks)/1024, "KiB")
		r.Add("stack_inuse_per_socket", stackSum/float64(memSocks)/1024, "KiB")
	}
}

// publishEach publishes event seq to every merchant straight to Redis and
// returns how many publishes failed.
func publishEach(ctx context.Context, e *Env, merchants []string, seq uint64) int64 {
	var failed atomic.Int64
	var wg sync.WaitGroup
	jobs := make(chan string)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range jobs {
				if _, err := e.Stream.Publish(ctx, id, seq, int64(seq), OrderFrame(id, seq, time.Now())); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	for _, id := range merchants {
		jobs <- id
	}
	close(jobs)
	wg.Wait()
	return failed.Load()
}

// verifyIdle publishes event seq to each merchant and checks every socket
// got it: idle sockets must still receive their orders.
func verifyIdle(ctx context.Context, e *Env, h idleHolder, merchants []string, seq uint64, sockets int, cfg IdleConfig, r *Report) error {
	start := e.Now()
	if n := publishEach(ctx, e, merchants, seq); n > 0 {
		r.Notef("%d verify publishes failed", n)
	}
	want := int64(sockets)
	var seen atomic.Int64
	prog := StartProgress(e.Progress, "verify", func() string { return Bar(seen.Load(), want) })
	dctx, cancel := context.WithTimeout(ctx, cfg.Drain)
	for {
		n, err := h.seen(dctx)
		if err != nil {
			cancel()
			prog.Stop()
			return err
		}
		seen.Store(n)
		if n >= want || dctx.Err() != nil {
			break
		}
		waitTick(dctx, 20*time.Millisecond)
	}
	cancel()
	prog.Stop()
	r.Add("verify_all_received_s", (e.Now() - start).Seconds(), "s")
	r.Add("verify_missing", float64(want-seen.Load()), "sockets").Target = &Target{Op: "<=", Value: 0}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
