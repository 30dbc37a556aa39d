package loadgen

import (
	"context"
	"fmt"
	"sort"
	"strconv"
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
	Drain  time.Duration // how long Verify waits for the last frame
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
}

func (e *Env) gatewayStats(ctx context.Context) []gatewayStat {
	out := make([]gatewayStat, len(e.Gateways))
	for i := range e.Gateways {
		out[i] = gatewayStat{RSS: -1, Goroutines: -1}
		if i < len(e.GatewayPIDs) && e.GatewayPIDs[i] > 0 {
			if r, err := RSS(e.GatewayPIDs[i]); err == nil {
				out[i].RSS = r
			}
		}
		if g, err := MetricValue(ctx, e.HTTP, e.MetricsURL(i), "go_goroutines"); err == nil {
			out[i].Goroutines = g
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
	if cfg.Sockets >= 100000 {
		r.Variant = strconv.Itoa(cfg.Sockets/1000) + "k"
	}
	merchants := make([]string, cfg.Merchants)
	for i := range merchants {
		merchants[i] = e.MerchantID("i", i)
	}
	fl, err := NewFleet(e, merchants, FleetOptions{})
	if err != nil {
		return nil, err
	}
	defer fl.Close()
	before := e.gatewayStats(ctx)
	cpu := e.startCPU()
	res := fl.Open(ctx, cfg.Sockets, 0, cfg.Parallel)
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
	after := e.gatewayStats(ctx)
	heap := e.Profile.Heap(ctx, fmt.Sprintf("idle-run%d", run))
	for _, f := range heap {
		r.Notef("heap profile %s", f)
	}
	perGW := make([]int, len(e.Gateways))
	for _, s := range fl.Socks() {
		perGW[s.Gateway]++
	}
	var rssSum int64
	var rssSocks int
	var gorSum float64
	var gorSocks int
	for i := range e.Gateways {
		if perGW[i] == 0 {
			continue
		}
		if before[i].RSS >= 0 && after[i].RSS >= 0 {
			d := after[i].RSS - before[i].RSS
			rssSum += d
			rssSocks += perGW[i]
			r.Add("rss_per_socket_gw"+strconv.Itoa(i), float64(d)/float64(perGW[i])/1024, "KiB")
			r.Add("rss_gw"+strconv.Itoa(i), float64(after[i].RSS)/(1<<20), "MiB")
		}
		if before[i].Goroutines >= 0 && after[i].Goroutines >= 0 {
			gorSum += after[i].Goroutines - before[i].Goroutines
			gorSocks += perGW[i]
		}
	}
	if rssSocks > 0 {
		r.Add("rss_per_socket", float64(rssSum)/float64(rssSocks)/1024, "KiB").Target = &Target{Op: "<=", Value: 24}
	} else {
		r.Notef("no local gateway pid given (-pids): RSS per socket not measured")
	}
	if gorSocks > 0 {
		r.Add("goroutines_per_socket", gorSum/float64(gorSocks), "")
	}
	if cfg.Verify {
		if err := verifyIdle(ctx, e, fl, cfg, r); err != nil {
			return r, err
		}
	}
	if d := fl.Dropped(); d > 0 {
		r.Notef("%d sockets closed by the server: %v", d, Drops(fl.Socks()))
	}
	return r, nil
}

// verifyIdle publishes one event per merchant and checks every socket got
// it: the 100k target is sockets that still receive their orders.
func verifyIdle(ctx context.Context, e *Env, fl *Fleet, cfg IdleConfig, r *Report) error {
	socks := fl.Socks()
	perMerchant := map[int]uint64{}
	for _, s := range socks {
		perMerchant[s.Merchant] = max(perMerchant[s.Merchant], s.HelloSeq)
	}
	ms := make([]int, 0, len(perMerchant))
	for m := range perMerchant {
		ms = append(ms, m)
	}
	sort.Ints(ms)
	var failed atomic.Int64
	var wg sync.WaitGroup
	jobs := make(chan int)
	start := e.Now()
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range jobs {
				id := fl.Merchants()[m]
				seq := perMerchant[m] + 1
				if _, err := e.Stream.Publish(ctx, id, seq, int64(seq), OrderFrame(id, seq, time.Now())); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	for _, m := range ms {
		jobs <- m
	}
	close(jobs)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		r.Notef("%d verify publishes failed", n)
	}
	want := int64(len(socks))
	prog := StartProgress(e.Progress, "verify", func() string { return Bar(fl.Seen(), want) })
	dctx, cancel := context.WithTimeout(ctx, cfg.Drain)
	fl.WaitSeen(dctx, want)
	cancel()
	prog.Stop()
	r.Add("verify_all_received_s", (e.Now() - start).Seconds(), "s")
	missing := want - fl.Seen()
	r.Add("verify_missing", float64(missing), "sockets").Target = &Target{Op: "<=", Value: 0}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
