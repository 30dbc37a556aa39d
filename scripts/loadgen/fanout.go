package loadgen

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"sync/atomic"
	"time"
)

// FanoutConfig sizes the fan-out scenario.
type FanoutConfig struct {
	Sockets  int           // K sockets of one merchant
	Duration time.Duration // of the publishing phase
	Limit    int           // frames at most
	Window   int           // frames published but not yet received by every socket, at most
	Batch    bool          // ?batch=1 (and a coalescing floor), WebSocket only
	// Transport of the K sockets: TransportWS (default), TransportSSE or
	// TransportSocketIO. The floor is a WebSocket server whatever it is.
	Transport string
	Floor     bool // measure the in-process WebSocket floor first
	Parallel  int
	Drain     time.Duration
}

func (c *FanoutConfig) defaults() {
	c.Sockets = cmp0(c.Sockets, 2000)
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	c.Limit = cmp0(c.Limit, 1_000_000)
	// Below the gateway's default send queue (256), so a socket that is a
	// whole window behind is never closed as a slow consumer.
	c.Window = cmp0(c.Window, 128)
	c.Parallel = cmp0(c.Parallel, 256)
	if c.Drain <= 0 {
		// A whole window to every socket: 256,000 deliveries for 2,000
		// sockets, seconds for the slower transports on a loaded machine.
		c.Drain = 30 * time.Second
	}
}

// fanCounter counts, per seq, the sockets that got the frame, and wakes the
// publisher when a frame has reached all of them.
type fanCounter struct {
	e         *Env
	k         atomic.Int32
	cnt       []atomic.Int32 // by seq
	completed atomic.Int64
	lastDone  atomic.Int64 // Env.Now() of the latest completion
	wake      chan struct{}
}

func newFanCounter(e *Env, limit int) *fanCounter {
	return &fanCounter{e: e, cnt: make([]atomic.Int32, limit+1), wake: make(chan struct{}, 1)}
}

func (c *fanCounter) onFrame(_ *Sock, seq uint64) {
	if seq >= uint64(len(c.cnt)) {
		return
	}
	if c.cnt[seq].Add(1) == c.k.Load() {
		c.completed.Add(1)
		c.lastDone.Store(int64(c.e.Now()))
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// fanResult is one fan-out phase.
type fanResult struct {
	Frames     int64
	Deliveries int64
	Elapsed    time.Duration // first publish to the last frame complete
	Delivery   Delivery
}

func (r fanResult) rate() float64 { return float64(r.Deliveries) / r.Elapsed.Seconds() }

// fanPhase publishes frames 1, 2, ... with at most cfg.Window incomplete,
// until cfg.Duration or cfg.Limit, then waits for the last ones.
func fanPhase(ctx context.Context, e *Env, fl *Fleet, c *fanCounter, cfg FanoutConfig, name string, publish func(ctx context.Context, seq uint64) error) (fanResult, error) {
	k := len(fl.Socks())
	if k == 0 {
		return fanResult{}, errors.New("fanout: no socket opened")
	}
	c.k.Store(int32(k))
	base := fl.Seen()
	var seq int64
	prog := StartProgress(e.Progress, name, func() string {
		return fmt.Sprintf("frames %d deliveries %d", atomic.LoadInt64(&seq), fl.Seen()-base)
	})
	defer prog.Stop()
	start := e.Now()
	deadline := time.Now().Add(cfg.Duration)
	got := base // deliveries when the last stall check found some
	for seq < int64(cfg.Limit) && time.Now().Before(deadline) && ctx.Err() == nil {
		stall := time.NewTimer(5 * time.Second)
		for seq-c.completed.Load() >= int64(cfg.Window) {
			select {
			case <-c.wake:
				continue
			case <-stall.C:
				// A slow transport on a loaded machine may take longer than
				// that to complete a whole window; a stall is nothing
				// arriving at all.
				if n := fl.Seen(); n > got {
					got = n
					stall.Reset(5 * time.Second)
					continue
				}
				return fanResult{}, fmt.Errorf("%s: nothing delivered for 5s (%d of %d frames complete; sockets dropped: %d)", name, c.completed.Load(), seq, fl.Dropped())
			case <-ctx.Done():
				return fanResult{}, ctx.Err()
			}
		}
		stall.Stop()
		if err := publish(ctx, uint64(seq+1)); err != nil {
			return fanResult{}, fmt.Errorf("%s: publish %d: %w", name, seq+1, err)
		}
		atomic.AddInt64(&seq, 1)
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.Drain)
	for c.completed.Load() < seq && dctx.Err() == nil {
		select {
		case <-c.wake:
		case <-dctx.Done():
		}
	}
	cancel()
	res := fanResult{Frames: seq, Deliveries: fl.Seen() - base}
	res.Elapsed = time.Duration(c.lastDone.Load()) - start
	if c.completed.Load() < seq {
		res.Elapsed = e.Now() - start
	}
	return res, nil
}

// fanoutVariant labels a fan-out report: "batch" for WebSockets with
// ?batch=1 (which only they have), then the transport.
func fanoutVariant(batch bool, transport string) string {
	if batch && cmp.Or(transport, TransportWS) == TransportWS {
		return "batch"
	}
	return transportVariant("", transport)
}

// Fanout runs the fan-out scenario: one merchant with K sockets, frames
// published straight to Redis as fast as the window allows, deliveries/s.
func Fanout(ctx context.Context, e *Env, cfg FanoutConfig, run int) (*Report, error) {
	cfg.defaults()
	if err := e.NeedGateways(); err != nil {
		return nil, err
	}
	if err := e.NeedRedis(); err != nil {
		return nil, err
	}
	e.NextRun() // fresh merchants: no history from an earlier scenario
	r := &Report{Scenario: "fanout", Run: run, Started: time.Now()}
	r.Variant = fanoutVariant(cfg.Batch, cfg.Transport)
	var floor *fanResult
	if cfg.Floor {
		fr, err := fanoutFloor(ctx, e, cfg)
		if err != nil {
			return nil, err
		}
		floor = &fr
	}
	merchant := e.MerchantID("f", 0)
	c := newFanCounter(e, cfg.Limit)
	fl, err := NewFleet(e, []string{merchant}, FleetOptions{Batch: cfg.Batch, OnFrame: c.onFrame, Transport: cfg.Transport})
	if err != nil {
		return nil, err
	}
	defer fl.Close()
	op := fl.Open(ctx, cfg.Sockets, 0, cfg.Parallel)
	if op.Failed > 0 {
		r.Notef("%d of %d sockets failed to open: %v", op.Failed, cfg.Sockets, op.Errors)
	}
	wait := e.Profile.CPU(ctx, fmt.Sprintf("%s-run%d", transportVariant("fanout", cfg.Transport), run), min(cfg.Duration, 10*time.Second))
	cpu := e.startCPU()
	res, err := fanPhase(ctx, e, fl, c, cfg, "fanout", func(ctx context.Context, seq uint64) error {
		_, err := e.Stream.Publish(ctx, merchant, seq, int64(seq), OrderFrame(merchant, seq, time.Now()))
		return err
	})
	gw := cpu.addCPU(r, "")
	wait()
	if err != nil {
		return r, err
	}
	socks := fl.Socks()
	fl.Close()
	var d Delivery
	for _, s := range socks {
		d.Add(s.Track, uint64(res.Frames))
	}
	r.Add("sockets", float64(len(socks)), "")
	r.Add("frames", float64(res.Frames), "")
	m := r.Add("deliveries_per_s", res.rate(), "/s")
	m.Target = &Target{Op: ">=", Value: 500000}
	if floor != nil {
		m.Floor = floor.rate()
	}
	r.Add("ns_per_delivery", float64(res.Elapsed.Nanoseconds())/float64(max(1, res.Deliveries)), "ns")
	if gw >= 0 {
		r.Add("gateway_cpu_ns_per_delivery", float64(gw.Nanoseconds())/float64(max(1, res.Deliveries)), "ns")
	}
	r.AddDelivery("", d)
	if n := Drops(socks); len(n) > 0 {
		r.Notef("sockets closed early: %v", n)
	}
	return r, nil
}

// fanoutFloor runs the same phase against the in-process WebSocket floor.
func fanoutFloor(ctx context.Context, e *Env, cfg FanoutConfig) (fanResult, error) {
	srv, err := StartWSFloor(e.Secret, cfg.Batch)
	if err != nil {
		return fanResult{}, err
	}
	defer srv.Close()
	merchant := e.MerchantID("ff", 0)
	c := newFanCounter(e, cfg.Limit)
	fl, err := NewFleet(e, []string{merchant}, FleetOptions{OnFrame: c.onFrame, URLs: []*url.URL{srv.URL}})
	if err != nil {
		return fanResult{}, err
	}
	defer fl.Close()
	op := fl.Open(ctx, cfg.Sockets, 0, cfg.Parallel)
	if op.Opened == 0 {
		return fanResult{}, fmt.Errorf("fanout floor: no socket opened: %v", op.Errors)
	}
	srv.StartWriters(runtime.GOMAXPROCS(0), cfg.Window+1)
	return fanPhase(ctx, e, fl, c, cfg, "fanout floor", func(_ context.Context, seq uint64) error {
		srv.Publish(OrderFrame(merchant, seq, time.Now()))
		return nil
	})
}
