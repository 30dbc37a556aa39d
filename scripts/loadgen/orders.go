package loadgen

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"orderpush/pkg/token"
)

// OrdersConfig sizes the orders scenario.
type OrdersConfig struct {
	Clients   int           // concurrent clients, each waits for its answer before the next order
	Duration  time.Duration // of the phase
	Limit     int           // orders at most
	Merchants int           // orders spread round-robin over this many merchants
	Variant   string        // label: the database behind the order API
	// Target is the orders/s issue 6 asks of this database (0: none).
	Target float64
}

func (c *OrdersConfig) defaults() {
	c.Clients = cmp0(c.Clients, 64)
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	c.Limit = cmp0(c.Limit, 10_000_000)
	c.Merchants = cmp0(c.Merchants, 2000)
}

// Orders measures POST /orders throughput and latency with closed-loop
// clients: each has one request in flight.
func Orders(ctx context.Context, e *Env, cfg OrdersConfig, run int) (*Report, error) {
	cfg.defaults()
	if err := e.NeedOrderAPI(); err != nil {
		return nil, err
	}
	e.NextRun() // fresh merchants: no history from an earlier scenario
	r := &Report{Scenario: "orders", Variant: cfg.Variant, Run: run, Started: time.Now()}
	merchants := make([]string, cfg.Merchants)
	for i := range merchants {
		merchants[i] = e.MerchantID("o", i)
	}
	toks := make([]string, cfg.Clients)
	for i := range toks {
		t, err := token.Mint(e.Secret, token.RoleMember, e.UserID(i), 6*time.Hour)
		if err != nil {
			return nil, err
		}
		toks[i] = t
	}
	var next, ok, failed atomic.Int64
	var mu sync.Mutex
	var all Latencies
	errs := map[string]int{}
	pctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	prog := StartProgress(e.Progress, "orders", func() string {
		return fmt.Sprintf("ok %d failed %d", ok.Load(), failed.Load())
	})
	start := time.Now()
	cpu := e.startCPU()
	profName := fmt.Sprintf("orders-%s-run%d", cfg.Variant, run)
	waitProfile := e.Profile.CPU(ctx, profName, min(cfg.Duration, 10*time.Second))
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat Latencies
			for pctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(cfg.Limit) {
					break
				}
				t0 := time.Now()
				// The request itself gets the parent context: a phase
				// ending must not cut a request short and count it failed.
				_, status, err := e.PostOrder(ctx, toks[c], merchants[i%int64(len(merchants))])
				d := time.Since(t0)
				if err != nil {
					failed.Add(1)
					mu.Lock()
					errs[statusKey(status, err)]++
					mu.Unlock()
					continue
				}
				ok.Add(1)
				lat.Add(d)
			}
			mu.Lock()
			all.Merge(&lat)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	prog.Stop()
	cpu.addCPU(r, "")
	waitProfile()
	e.Profile.Heap(ctx, profName)
	if c := r.Metric("orderapi_cpu_cores"); c != nil && ok.Load() > 0 {
		// The database's CPU too on PostgreSQL (its own processes); on
		// SQLite it is the order API's.
		cores := c.Value
		if p := r.Metric("postgres_cpu_cores"); p != nil && cfg.Variant == DBPostgres {
			cores += p.Value
		}
		r.Add("cpu_per_order", cores*elapsed.Seconds()/float64(ok.Load())*1e6, "us")
	}
	m := r.Add("orders_per_s", float64(ok.Load())/elapsed.Seconds(), "/s")
	if cfg.Target > 0 {
		m.Target = &Target{Op: ">=", Value: cfg.Target}
	}
	r.Add("clients", float64(cfg.Clients), "")
	r.Add("orders", float64(ok.Load()), "")
	r.Add("failed", float64(failed.Load()), "").Target = &Target{Op: "<=", Value: 0}
	s := all.Summary()
	r.Add("p50", ms(s.P50), "ms")
	r.Add("p99", ms(s.P99), "ms")
	r.Add("max", ms(s.Max), "ms")
	for k, n := range errs {
		r.Notef("%d orders failed: %s", n, k)
	}
	return r, nil
}
