package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"orderpush/pkg/token"
)

// Publishing modes of the latency and churn scenarios.
const (
	ModeHTTP  = "http"  // POST /orders: the whole path, database included
	ModeRedis = "redis" // frames published straight to Redis: the gateway alone
)

// LatencyConfig sizes the latency scenario.
type LatencyConfig struct {
	Sockets   int
	Merchants int
	Rate      float64       // orders (or frames) per second
	Duration  time.Duration // of the paced phase
	Mode      string        // ModeHTTP or ModeRedis
	Workers   int           // requests in flight at most
	Floor     bool          // measure the raw Redis pub/sub floor first, at the same rate
	Drain     time.Duration // wait for the last frames after the phase
	Parallel  int           // dials in flight while opening
	Batch     bool          // ?batch=1, WebSocket only
	Transport string        // TransportWS (default), TransportSSE or TransportSocketIO
	// NoReceipts keeps the sockets from acking and sending seen in HTTP
	// mode: a like-for-like run beside a peer that has no receipts.
	NoReceipts bool
	Variant    string // report label, e.g. the database behind the order API; a transport other than ws is appended
	// Reference marks a run that issue 6 sets no target for (another rate).
	Reference bool
}

func (c *LatencyConfig) defaults() {
	c.Sockets = cmp0(c.Sockets, 10000)
	c.Merchants = cmp0(c.Merchants, 2000)
	if c.Rate <= 0 {
		c.Rate = 2000
	}
	if c.Duration <= 0 {
		c.Duration = 20 * time.Second
	}
	if c.Mode == "" {
		c.Mode = ModeRedis
	}
	c.Workers = cmp0(c.Workers, 64)
	if c.Drain <= 0 {
		c.Drain = 10 * time.Second
	}
	c.Parallel = cmp0(c.Parallel, 256)
	if c.Variant == "" {
		c.Variant = c.Mode
	}
}

// orderFlow publishes paced orders for a set of merchants and remembers when
// each was sent, so receipts can be matched to it (by orderNo in HTTP mode,
// by (merchant, seq) in Redis mode).
type orderFlow struct {
	e         *Env
	mode      string
	merchants []string
	members   []string // member tokens, HTTP mode

	sendAt    []atomic.Int64 // job index -> Env.Now() just before the request
	published []atomic.Int64 // per merchant: successful publishes (= its last seq)
	turns     []turn         // per merchant, Redis mode: its frames leave one after another
	failed    atomic.Int64
	errMu     sync.Mutex
	errs      map[string]int
	orderIdx  sync.Map // orderNo -> job index (HTTP mode)
	reqMu     sync.Mutex
	reqLat    Latencies // request round trips
}

func newOrderFlow(e *Env, mode string, merchants []string, total, members int) (*orderFlow, error) {
	switch mode {
	case ModeRedis:
		if err := e.NeedRedis(); err != nil {
			return nil, err
		}
	case ModeHTTP:
		if err := e.NeedOrderAPI(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("mode %q: want %s or %s", mode, ModeHTTP, ModeRedis)
	}
	f := &orderFlow{e: e, mode: mode, merchants: merchants, sendAt: make([]atomic.Int64, total),
		published: make([]atomic.Int64, len(merchants)), errs: map[string]int{}}
	if mode == ModeRedis {
		f.turns = make([]turn, len(merchants))
		for i := range f.turns {
			f.turns[i].cond.L = &f.turns[i].mu
		}
	}
	if mode == ModeHTTP {
		for i := range members {
			t, err := token.Mint(e.Secret, token.RoleMember, e.UserID(i), 6*time.Hour)
			if err != nil {
				return nil, err
			}
			f.members = append(f.members, t)
		}
	}
	return f, nil
}

// send is job i: merchant i % M. In Redis mode its seq is i/M + 1, so a
// receipt (merchant, seq) names the job without a lookup, and it waits for
// the merchant's previous publish to return, so a merchant's frames reach
// Redis in seq order even when a loaded machine stalls one publisher for
// longer than the round of merchants that separates them. The time is
// taken after that wait: it is the load generator's, not the stack's.
func (f *orderFlow) send(ctx context.Context, i int) {
	m := i % len(f.merchants)
	id := f.merchants[m]
	var err error
	var status int
	t0 := f.e.Now()
	switch f.mode {
	case ModeRedis:
		seq := uint64(i/len(f.merchants) + 1)
		f.turns[m].wait(seq)
		fr := OrderFrame(id, seq, time.Now())
		t0 = f.e.Now()
		f.sendAt[i].Store(int64(t0))
		_, err = f.e.Stream.Publish(ctx, id, seq, int64(seq), fr)
		f.turns[m].finish(seq)
	case ModeHTTP:
		f.sendAt[i].Store(int64(t0))
		var no string
		no, status, err = f.e.PostOrder(ctx, f.members[i%len(f.members)], id)
		if err == nil {
			f.orderIdx.Store(no, i)
		}
	}
	if err != nil {
		f.failed.Add(1)
		f.errMu.Lock()
		f.errs[statusKey(status, err)]++
		f.errMu.Unlock()
		return
	}
	f.published[m].Add(1)
	d := f.e.Now() - t0
	f.reqMu.Lock()
	f.reqLat.Add(d)
	f.reqMu.Unlock()
}

// turn orders one merchant's publishes by seq. The job of seq s was handed
// out after that of s-1, which therefore runs or has run: a wait always
// ends.
type turn struct {
	mu   sync.Mutex
	cond sync.Cond // L is mu
	done uint64    // the last seq whose publish returned
}

// wait returns once the publish of seq-1 has returned.
func (t *turn) wait(seq uint64) {
	t.mu.Lock()
	for t.done+1 < seq {
		t.cond.Wait()
	}
	t.mu.Unlock()
}

// finish lets seq+1 go.
func (t *turn) finish(seq uint64) {
	t.mu.Lock()
	t.done = seq
	t.mu.Unlock()
	t.cond.Broadcast()
}

// total is the number of successful publishes.
func (f *orderFlow) total() int64 {
	var n int64
	for i := range f.published {
		n += f.published[i].Load()
	}
	return n
}

// jobOf maps a receipt of merchant m to its job index, or -1.
func (f *orderFlow) jobOf(m int, r Receipt) int {
	if f.mode == ModeHTTP {
		v, ok := f.orderIdx.Load(r.OrderNo)
		if !ok {
			return -1
		}
		return v.(int)
	}
	i := int(r.Seq-1)*len(f.merchants) + m
	if r.Seq == 0 || i >= len(f.sendAt) {
		return -1
	}
	return i
}

// timeOf is the send time of job i.
func timeOf(f *orderFlow, i int) time.Duration { return time.Duration(f.sendAt[i].Load()) }

// expected is the number of stream frames the sockets should get in all.
func (f *orderFlow) expected(socks []*Sock) int64 {
	var n int64
	for _, s := range socks {
		if last := uint64(f.published[s.Merchant].Load()); last > s.HelloSeq {
			n += int64(last - s.HelloSeq)
		}
	}
	return n
}

// account computes latency samples and loss over socks, which must be closed
// (their readers done).
func (f *orderFlow) account(socks []*Sock) (Latencies, Delivery) {
	var lat Latencies
	var d Delivery
	for _, s := range socks {
		// One sample per order and socket: the order's later events
		// (order.seen, processed) carry its orderNo too.
		done := make(map[int]bool, len(s.Receipts))
		for _, r := range s.Receipts {
			if i := f.jobOf(s.Merchant, r); i >= 0 && !done[i] {
				done[i] = true
				lat.Add(r.At - timeOf(f, i))
			}
		}
		d.Add(s.Track, uint64(f.published[s.Merchant].Load()))
	}
	return lat, d
}

func (f *orderFlow) notes(r *Report) {
	for k, n := range f.errs {
		r.Notef("%d publishes failed: %s", n, k)
	}
}

// Latency runs the latency scenario: sockets over merchants, orders at a fixed
// rate, order-start -> receipt on every socket of the merchant.
func Latency(ctx context.Context, e *Env, cfg LatencyConfig, run int) (*Report, error) {
	cfg.defaults()
	if err := e.NeedGateways(); err != nil {
		return nil, err
	}
	e.NextRun() // fresh merchants: no history from an earlier scenario
	r := &Report{Scenario: "latency", Variant: transportVariant(cfg.Variant, cfg.Transport), Run: run, Started: time.Now()}
	merchants := make([]string, cfg.Merchants)
	for i := range merchants {
		merchants[i] = e.MerchantID("l", i)
	}
	total := int(cfg.Rate * cfg.Duration.Seconds())
	flow, err := newOrderFlow(e, cfg.Mode, merchants, total, 64)
	if err != nil {
		return nil, err
	}
	var floor, scriptFloor *Summary
	if cfg.Floor && e.Redis != nil {
		restore := holdGC()
		// The raw floor, then the same frames through the publish script,
		// both before any socket is open: the script's own cost.
		for _, script := range []bool{false, true} {
			fr, err := RedisFloor(ctx, e, cfg.Merchants, cfg.Rate, cfg.Duration, cfg.Workers, script)
			if err != nil {
				return nil, err
			}
			name := "floor"
			if script {
				name = "script_floor"
				scriptFloor = &fr.Latency
			} else {
				floor = &fr.Latency
			}
			r.Add(name+"_published", float64(fr.Published), "")
			r.Add(name+"_lost", float64(fr.Published-fr.Received), "")
			if fr.Pace.LateJobs > 0 {
				r.Notef("%s schedule slipped: %d publishes >1ms late, max %s", name, fr.Pace.LateJobs, fr.Pace.MaxLag)
			}
		}
		restore()
	}
	// Receipts only in HTTP mode (frames published straight to Redis are
	// no orders of the order API, which would refuse every ack) and over
	// WebSocket (the load generator's client that sends frames).
	receipts := !cfg.NoReceipts && cfg.Mode == ModeHTTP && (cfg.Transport == "" || cfg.Transport == TransportWS)
	fo := FleetOptions{Record: true, RecordOrders: cfg.Mode == ModeHTTP, Batch: cfg.Batch, Transport: cfg.Transport, Seen: receipts}
	if receipts {
		fo.Ack = ackEvery
	}
	fl, err := NewFleet(e, merchants, fo)
	if err != nil {
		return nil, err
	}
	defer fl.Close()
	op := fl.Open(ctx, cfg.Sockets, 0, cfg.Parallel)
	if op.Failed > 0 {
		r.Notef("%d of %d sockets failed to open: %v", op.Failed, cfg.Sockets, op.Errors)
	}
	if op.Opened == 0 {
		return r, errors.New("latency: no socket opened")
	}
	tap, err := startTap(ctx, e, merchants, cfg.Mode == ModeHTTP)
	if err != nil {
		return r, err
	}
	restore := holdGC()
	cpu, sched, gc0 := e.startCPU(), startSched(), gcCycles()
	pr, err := runFlow(ctx, e, fl, flow, cfg.Rate, cfg.Duration, cfg.Workers, cfg.Drain, fmt.Sprintf("latency-%s-run%d", r.Variant, run))
	cpu.addCPU(r, "")
	sq, gcs := sched.quantiles(0.99, 0.999), gcCycles()-gc0
	restore()
	r.Add("loadgen_sched_p99", ms(sq[0]), "ms")
	r.Add("loadgen_sched_p99.9", ms(sq[1]), "ms")
	r.Add("loadgen_gc_cycles", float64(gcs), "")
	tapLat := tap.stop(flow)
	if err != nil {
		return r, err
	}
	if receipts {
		if err := flow.receipts(ctx, r, fl); err != nil {
			return r, err
		}
	}
	socks := fl.Socks()
	fl.Close()
	lat, d := flow.account(socks)
	s := lat.Summary()
	r.Add("rate", float64(flow.total())/cfg.Duration.Seconds(), "/s")
	r.AddLatency("", s, floor)
	if scriptFloor != nil {
		r.AddLatency("script_floor_", *scriptFloor, floor)
	}
	p99 := r.Metric("p99")
	switch {
	case cfg.Reference:
	case cfg.Mode == ModeRedis:
		p99.Target = &Target{Op: "<=", Value: 3}
		if floor != nil {
			p99.RatioTarget = &Target{Op: "<=", Value: 2}
		}
	case cfg.Mode == ModeHTTP:
		p99.Target = &Target{Op: "<=", Value: 10}
	}
	r.AddDelivery("", d)
	rs := flow.reqLat.Summary()
	r.Add("request_p50", ms(rs.P50), "ms")
	r.Add("request_p99", ms(rs.P99), "ms")
	if tapLat.Len() > 0 {
		// The same frames at a plain Redis subscriber, at the same time: the
		// latency up to Redis; the rest of p99 above is the gateway's.
		ts := tapLat.Summary()
		r.Add("to_redis_p50", ms(ts.P50), "ms")
		r.Add("to_redis_p99", ms(ts.P99), "ms")
		r.Add("to_redis_p99.9", ms(ts.P999), "ms")
	}
	if pr.LateJobs > 0 {
		r.Notef("schedule slipped: %d of %d sends >1ms late, max %s", pr.LateJobs, pr.Started, pr.MaxLag.Round(time.Microsecond))
	}
	flow.notes(r)
	if n := Drops(socks); len(n) > 0 {
		r.Notef("sockets closed early: %v", n)
	}
	return r, nil
}

// runFlow paces the flow against the open fleet, then waits for the sockets
// to get everything that was published (or the drain deadline).
func runFlow(ctx context.Context, e *Env, fl *Fleet, flow *orderFlow, rate float64, dur time.Duration, workers int, drain time.Duration, profName string) (PaceResult, error) {
	base := fl.Seen()
	prog := StartProgress(e.Progress, "publish", func() string {
		return fmt.Sprintf("sent %d received %d failed %d", flow.total(), fl.Seen()-base, flow.failed.Load())
	})
	wait := e.Profile.CPU(ctx, profName, min(dur, 10*time.Second))
	pr := Pace(ctx, rate, dur, len(flow.sendAt), workers, flow.send)
	dctx, cancel := context.WithTimeout(ctx, drain)
	fl.WaitSeen(dctx, flow.expected(fl.Socks()))
	cancel()
	prog.Stop()
	wait()
	e.Profile.Heap(ctx, profName)
	if flow.total() == 0 {
		return pr, fmt.Errorf("nothing was published: %v", flow.errs)
	}
	return pr, ctx.Err()
}

// ackEvery is how often a load generator socket acks what it got: the most
// the contract lets a client wait.
const ackEvery = 250 * time.Millisecond

// receiptsSettle bounds the wait, after every frame arrived, for the last
// acks and seen to show in the order API: longer than a gateway keeps
// retrying a receipt (30 s), so an order still without deliveredAt or
// seenAt then was lost, not late. Each look reads every order, so looks
// are receiptsPoll apart.
const (
	receiptsSettle = 40 * time.Second
	receiptsPoll   = time.Second
)

// receipts reports placed-to-delivered and placed-to-seen from the orders'
// own timestamps (createdAt to deliveredAt and seenAt, all set by the order
// API), read back once every order has both or receiptsSettle passed; the
// orders still without count as undelivered and unseen (lost).
func (f *orderFlow) receipts(ctx context.Context, r *Report, fl *Fleet) error {
	tok, err := f.e.Token(token.RoleService, "loadgen", time.Hour)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(receiptsSettle)
	var delivered, seen Latencies
	var undelivered, unseen, failedLooks int
	var lastErr error
	for {
		delivered, seen, undelivered, unseen, err = f.receiptTimes(ctx, tok)
		switch {
		case time.Now().After(deadline):
			if err != nil {
				return err
			}
		case err != nil:
			// A loaded order API may refuse a read (503); look again.
			failedLooks++
			lastErr = err
		}
		if err == nil && undelivered+unseen == 0 && fl.Unacked() == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(receiptsPoll): // poll interval, bounded by the deadline
		}
	}
	ds, ss := delivered.Summary(), seen.Summary()
	r.Add("delivered_p50", ms(ds.P50), "ms")
	r.Add("delivered_p99", ms(ds.P99), "ms")
	r.Add("seen_p50", ms(ss.P50), "ms")
	r.Add("seen_p99", ms(ss.P99), "ms")
	r.Add("undelivered", float64(undelivered), "orders").Target = &Target{Op: "<=", Value: 0}
	r.Add("unseen", float64(unseen), "orders").Target = &Target{Op: "<=", Value: 0}
	if failedLooks > 0 {
		r.Notef("receipts: %d reads of the orders failed and were repeated, the last with: %v", failedLooks, lastErr)
	}
	acks, seenSent, errFrames := fl.ReceiptCounts()
	r.Notef("receipts: %d acks and %d seen sent, %d error frames back; delivered/seen from the orders' createdAt, deliveredAt, seenAt", acks, seenSent, errFrames)
	return nil
}

// receiptTimes reads every order of the flow's merchants (16 merchants at
// a time) and returns the placed-to-deliveredAt and placed-to-seenAt of
// those that have them, and how many have not.
func (f *orderFlow) receiptTimes(ctx context.Context, tok string) (delivered, seen Latencies, undelivered, unseen int, err error) {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
		next atomic.Int64
	)
	for range min(16, len(f.merchants)) {
		wg.Go(func() {
			var d, s Latencies
			var nd, ns int
			for {
				i := int(next.Add(1) - 1)
				if i >= len(f.merchants) {
					break
				}
				orders, err := f.e.MerchantOrders(ctx, tok, f.merchants[i])
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				for _, o := range orders {
					if o.DeliveredAt == nil {
						nd++
					} else {
						d.Add(o.DeliveredAt.Sub(o.CreatedAt))
					}
					if o.SeenAt == nil {
						ns++
					} else {
						s.Add(o.SeenAt.Sub(o.CreatedAt))
					}
				}
			}
			mu.Lock()
			delivered.Merge(&d)
			seen.Merge(&s)
			undelivered, unseen = undelivered+nd, unseen+ns
			mu.Unlock()
		})
	}
	wg.Wait()
	return delivered, seen, undelivered, unseen, errors.Join(errs...)
}
