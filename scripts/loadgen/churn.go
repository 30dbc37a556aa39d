package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"orderpush/pkg/presence"
	"orderpush/pkg/token"
)

// ChurnConfig sizes the churn scenario.
type ChurnConfig struct {
	Stable    int           // sockets that stay for the whole phase
	Merchants int           // stable and churning sockets share these merchants
	ChurnRate float64       // sockets opened per second; each closes after Lifetime
	Lifetime  time.Duration // how long a churning socket stays open
	Rate      float64       // orders per second
	Duration  time.Duration
	Mode      string
	Workers   int
	Drain     time.Duration
	Parallel  int
	// Presence bounds the wait for presence to match the open sockets after
	// the churn stops; the contract promises within 2 s.
	Presence time.Duration
}

func (c *ChurnConfig) defaults() {
	c.Stable = cmp0(c.Stable, 2000)
	c.Merchants = cmp0(c.Merchants, 200)
	if c.ChurnRate <= 0 {
		c.ChurnRate = 200
	}
	if c.Lifetime <= 0 {
		c.Lifetime = time.Second
	}
	if c.Rate <= 0 {
		c.Rate = 500
	}
	if c.Duration <= 0 {
		c.Duration = 15 * time.Second
	}
	if c.Mode == "" {
		c.Mode = ModeHTTP
	}
	c.Workers = cmp0(c.Workers, 64)
	if c.Drain <= 0 {
		c.Drain = 10 * time.Second
	}
	c.Parallel = cmp0(c.Parallel, 256)
	if c.Presence <= 0 {
		c.Presence = 10 * time.Second
	}
}

// Churn opens stable sockets, then connects and disconnects others at a rate
// while orders flow. Stable sockets must lose nothing; churning ones must
// never see a duplicate or a reorder; afterwards presence must count exactly
// the sockets still open.
func Churn(ctx context.Context, e *Env, cfg ChurnConfig, run int) (*Report, error) {
	cfg.defaults()
	if err := e.NeedGateways(); err != nil {
		return nil, err
	}
	if e.OrderAPI == "" {
		if err := e.NeedRedis(); err != nil {
			return nil, err
		}
	}
	e.NextRun() // fresh merchants: no history from an earlier scenario
	r := &Report{Scenario: "churn", Variant: cfg.Mode, Run: run, Started: time.Now()}
	merchants := make([]string, cfg.Merchants)
	for i := range merchants {
		merchants[i] = e.MerchantID("c", i)
	}
	total := int(cfg.Rate * cfg.Duration.Seconds())
	flow, err := newOrderFlow(e, cfg.Mode, merchants, total, 64)
	if err != nil {
		return nil, err
	}
	stable, err := NewFleet(e, merchants, FleetOptions{Record: true, RecordOrders: cfg.Mode == ModeHTTP})
	if err != nil {
		return nil, err
	}
	defer stable.Close()
	churn, err := NewFleet(e, merchants, FleetOptions{})
	if err != nil {
		return nil, err
	}
	defer churn.Close()
	op := stable.Open(ctx, cfg.Stable, 0, cfg.Parallel)
	if op.Opened == 0 {
		return r, errors.New("churn: no stable socket opened")
	}
	if op.Failed > 0 {
		r.Notef("%d stable sockets failed to open: %v", op.Failed, op.Errors)
	}

	var opened, failed atomic.Int64
	var emu sync.Mutex
	errs := map[string]int{}
	churnDone := make(chan PaceResult, 1)
	go func() {
		workers := int(math.Ceil(cfg.ChurnRate*cfg.Lifetime.Seconds()*2)) + 8
		churnDone <- Pace(ctx, cfg.ChurnRate, cfg.Duration, math.MaxInt, workers, func(ctx context.Context, j int) {
			s, err := churn.OpenOne(ctx, j)
			if err != nil {
				failed.Add(1)
				emu.Lock()
				errs[errKey(err)]++
				emu.Unlock()
				return
			}
			opened.Add(1)
			waitTick(ctx, cfg.Lifetime)
			churn.CloseSock(s)
		})
	}()
	if _, err := runFlow(ctx, e, stable, flow, cfg.Rate, cfg.Duration, cfg.Workers, cfg.Drain, fmt.Sprintf("churn-run%d", run)); err != nil {
		return r, err
	}
	cp := <-churnDone
	mismatch, exactAfter, err := waitPresence(ctx, e, stable, cfg.Presence)
	if err != nil {
		r.Notef("presence check: %v", err)
	}
	socks := stable.Socks()
	stable.Close()
	churn.Close()
	lat, d := flow.account(socks)
	r.Add("stable_sockets", float64(len(socks)), "")
	r.Add("churn_connects", float64(opened.Load()), "")
	r.Add("churn_connects_per_s", float64(opened.Load())/cp.Elapsed.Seconds(), "/s")
	r.Add("churn_failed", float64(failed.Load()), "").Target = &Target{Op: "<=", Value: 0}
	r.Add("rate", float64(flow.total())/cfg.Duration.Seconds(), "/s")
	r.AddLatency("", lat.Summary(), nil)
	r.AddDelivery("stable_", d)
	var stale int64
	for _, s := range churn.Socks() {
		stale += s.Track.Stale
	}
	r.Add("churn_dup_or_reordered", float64(stale), "frames").Target = &Target{Op: "<=", Value: 0}
	r.Add("presence_mismatch", float64(mismatch), "merchants").Target = &Target{Op: "<=", Value: 0}
	if exactAfter >= 0 {
		r.Add("presence_exact_after", exactAfter.Seconds(), "s").Target = &Target{Op: "<=", Value: 2}
	}
	for k, n := range errs {
		r.Notef("%d churn connects failed: %s", n, k)
	}
	flow.notes(r)
	if n := Drops(socks); len(n) > 0 {
		r.Notef("stable sockets closed early: %v", n)
	}
	return r, nil
}

// waitPresence polls every merchant's online count until it equals the
// number of stable sockets open for it, or limit passes. It returns the
// merchants still wrong and how long it took to be exact (-1 if never).
func waitPresence(ctx context.Context, e *Env, fl *Fleet, limit time.Duration) (int, time.Duration, error) {
	want := map[int]int{}
	for i := range fl.Merchants() {
		want[i] = 0
	}
	for _, s := range fl.Socks() {
		if !s.dropped.Load() {
			want[s.Merchant]++
		}
	}
	online, err := e.onlineFunc()
	if err != nil {
		return len(want), -1, err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		bad := 0
		var lastErr error
		for m, n := range want {
			got, err := online(ctx, fl.Merchants()[m])
			if err != nil {
				lastErr = err
				bad++
				continue
			}
			if got != n {
				bad++
			}
		}
		if bad == 0 {
			return 0, time.Since(start), nil
		}
		if ctx.Err() != nil {
			return bad, -1, lastErr
		}
		waitTick(ctx, 100*time.Millisecond)
	}
}

// onlineFunc reads a merchant's open sockets: the order API's summary when
// there is one (the contract), else presence in Redis directly.
func (e *Env) onlineFunc() (func(ctx context.Context, merchant string) (int, error), error) {
	if e.OrderAPI != "" {
		tok, err := token.Mint(e.Secret, token.RoleService, "loadgen", time.Hour)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, m string) (int, error) {
			s, err := e.MerchantSummary(ctx, tok, m)
			return s.Online, err
		}, nil
	}
	reg := presence.New(e.Redis, 0)
	return reg.Online, nil
}
