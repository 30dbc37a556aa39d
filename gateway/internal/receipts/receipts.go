// Package receipts forwards the receipts sockets send (ack and seen;
// PROTOCOL.md "Receipts and attention") to the order API without one
// request per frame. Per merchant it keeps only the highest ack (acks are
// cumulative) and the set of orders seen since the last flush, and every
// Interval it sends all of them in batches (POST /receipts, at most
// wire.MaxReceiptItems items each), a bounded number at a time, retrying
// transient failures until the flush's Budget is spent. Interval plus Budget stays under the contract's
// 2 s from a receipt reaching the gateway to it showing in the API. A
// receipt the order API did not take by then (no answer, 5xx, 429) waits
// for the next flushes, up to MaxAge after its first attempt: late is
// better than lost, since a person does not look at an order twice.
//
// Batches go out with the gateway's service token. Each item names the
// merchant of the socket's verified token; the order API skips a seen
// whose order is not that merchant's, so a merchant cannot mark another
// merchant's order seen.
//
// Memory is bounded: at most MaxMerchants merchants and MaxSeen orders wait
// between flushes; receipts over the caps are dropped and counted, as are
// all receipts when the gateway has no order API (ORDERAPI_URL unset) or
// the Forwarder is closed. What is pending when the gateway crashes is
// lost; the client's next ack, which it sends after every hello, restores
// the deliveredAt it carried; a lost seen stays unset until the person's
// next look, or processing the order, sets it.
//
// A Forwarder is safe for concurrent use. Run flushes until its context
// ends or Close is called; Close sends what is pending and returns.
package receipts

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/orderapi"
	"orderpush/pkg/logging"
	"orderpush/pkg/wire"
)

// Defaults of Config.
const (
	DefaultInterval     = 250 * time.Millisecond
	DefaultBudget       = 1500 * time.Millisecond
	DefaultMaxMerchants = 10_000
	DefaultMaxSeen      = 10_000
	DefaultConcurrency  = 16
	DefaultMaxAge       = 30 * time.Second
)

// Backoff between attempts of one batch: full jitter, doubling from
// retryBase up to retryCap, within the flush's budget.
const (
	retryBase = 50 * time.Millisecond
	retryCap  = 400 * time.Millisecond
)

// API is the part of the order API client the Forwarder calls. A refusal
// is an *orderapi.Error.
type API interface {
	Receipts(ctx context.Context, b wire.ReceiptBatch) (wire.ReceiptResult, error)
}

// Config tunes a Forwarder; zero values mean the defaults.
type Config struct {
	Interval     time.Duration // between flushes
	Budget       time.Duration // a flush's batches, retries included, end by then
	MaxMerchants int           // merchants with pending receipts
	MaxSeen      int           // pending seen orders, all merchants together
	Concurrency  int           // batches in flight at once
	MaxAge       time.Duration // a receipt failing transiently is retried this long
}

func (c Config) withDefaults() Config {
	c.Interval = cmp.Or(max(c.Interval, 0), DefaultInterval)
	c.Budget = cmp.Or(max(c.Budget, 0), DefaultBudget)
	c.MaxMerchants = cmp.Or(max(c.MaxMerchants, 0), DefaultMaxMerchants)
	c.MaxSeen = cmp.Or(max(c.MaxSeen, 0), DefaultMaxSeen)
	c.Concurrency = cmp.Or(max(c.Concurrency, 0), DefaultConcurrency)
	c.MaxAge = cmp.Or(max(c.MaxAge, 0), DefaultMaxAge)
	return c
}

// pending is one merchant's receipts since the last flush.
type pending struct {
	ack      uint64               // highest; 0: none
	ackFirst time.Time            // when that ack was first sent; zero: not yet
	seen     map[string]time.Time // order number -> first sent (zero: not yet); nil until the first
}

// counters are the metric's series, resolved once.
type counters struct{ ok, rejected, failed, dropped prometheus.Counter }

func newCounters(v *prometheus.CounterVec, kind string) counters {
	return counters{
		ok: v.WithLabelValues(kind, "ok"), rejected: v.WithLabelValues(kind, "rejected"),
		failed: v.WithLabelValues(kind, "error"), dropped: v.WithLabelValues(kind, "dropped"),
	}
}

// Forwarder coalesces receipts and forwards them.
type Forwarder struct {
	cfg       Config
	api       API // nil: every receipt is dropped
	log       *slog.Logger
	ack, seen counters

	mu      sync.Mutex
	byMerch map[string]*pending // guarded by mu
	nseen   int                 // guarded by mu: orders in byMerch
	closed  bool                // guarded by mu: receipts are dropped
	started bool                // guarded by mu: Run owns the final flush

	stop     chan struct{} // closed by Close
	stopOnce sync.Once
	done     chan struct{} // closed when Run returned
}

// New returns a Forwarder. api may be nil (no ORDERAPI_URL): receipts are
// then dropped and counted.
func New(cfg Config, api API, log *slog.Logger, m *metrics.Metrics) *Forwarder {
	return &Forwarder{
		cfg: cfg.withDefaults(), api: api, log: log,
		ack: newCounters(m.ReceiptsForwarded, metrics.ReceiptAck), seen: newCounters(m.ReceiptsForwarded, metrics.ReceiptSeen),
		byMerch: make(map[string]*pending),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// Ack records that a socket of merchant has every event up to seq; only the
// highest ack per merchant is forwarded. It never blocks on the network.
func (f *Forwarder) Ack(merchant string, seq uint64) {
	f.mu.Lock()
	p := f.entryLocked(merchant)
	if p == nil {
		f.mu.Unlock()
		f.ack.dropped.Inc()
		return
	}
	if seq > p.ack {
		p.ack, p.ackFirst = seq, time.Time{}
	}
	f.mu.Unlock()
}

// Seen records that a person looked at orderNo on a socket of merchant.
// An order already pending is not added again. It never blocks on the
// network.
func (f *Forwarder) Seen(merchant, orderNo string) {
	f.mu.Lock()
	p := f.entryLocked(merchant)
	if p == nil {
		f.mu.Unlock()
		f.seen.dropped.Inc()
		return
	}
	if _, dup := p.seen[orderNo]; dup {
		f.mu.Unlock()
		return
	}
	if f.nseen >= f.cfg.MaxSeen {
		f.mu.Unlock()
		f.seen.dropped.Inc()
		return
	}
	if p.seen == nil {
		p.seen = make(map[string]time.Time, 1)
	}
	p.seen[orderNo] = time.Time{}
	f.nseen++
	f.mu.Unlock()
}

// retry puts back a receipt the order API did not take, for the next
// flush, unless it has been tried for MaxAge or there is no room (then it
// counts as an error). A newer ack of the merchant already covers an older
// one.
func (f *Forwarder) retry(j item) (kept bool) {
	if time.Since(j.first) > f.cfg.MaxAge {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.entryLocked(j.merchant)
	if p == nil {
		return false
	}
	if j.orderNo == "" {
		if j.ack > p.ack {
			p.ack, p.ackFirst = j.ack, j.first
		}
		return true
	}
	if _, dup := p.seen[j.orderNo]; !dup {
		if f.nseen >= f.cfg.MaxSeen {
			return false
		}
		if p.seen == nil {
			p.seen = make(map[string]time.Time, 1)
		}
		f.nseen++
	}
	p.seen[j.orderNo] = j.first
	return true
}

// entryLocked is merchant's pending entry, made if there is room; nil when
// the receipt is to be dropped. f.mu must be held.
func (f *Forwarder) entryLocked(merchant string) *pending {
	if f.closed || f.api == nil {
		return nil
	}
	p := f.byMerch[merchant]
	if p == nil {
		if len(f.byMerch) >= f.cfg.MaxMerchants {
			return nil
		}
		p = new(pending)
		f.byMerch[merchant] = p
	}
	return p
}

// Run flushes every Interval until ctx ends or Close is called, then sends
// what is still pending and returns. Call it once.
func (f *Forwarder) Run(ctx context.Context) {
	defer close(f.done)
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.started = true
	f.mu.Unlock()
	t := time.NewTicker(f.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			f.flush(ctx)
		case <-ctx.Done():
			f.shut()
			f.flush(ctx)
			return
		case <-f.stop:
			f.flush(ctx)
			return
		}
	}
}

// Close stops taking receipts, sends what is pending (within one Budget)
// and returns once Run has returned. It is idempotent.
func (f *Forwarder) Close() {
	started := f.shut()
	f.stopOnce.Do(func() { close(f.stop) })
	if started {
		<-f.done
		return
	}
	f.flush(context.Background())
}

// shut makes later receipts drops and reports whether Run took over.
func (f *Forwarder) shut() (started bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return f.started
}

// item is one receipt of a flush.
type item struct {
	merchant string
	ack      uint64 // an ack when orderNo is empty
	orderNo  string
	first    time.Time // the receipt's first attempt
}

// flush sends everything pending. Its context is detached from ctx (a
// closing gateway still sends what it took) and ends after Budget.
func (f *Forwarder) flush(ctx context.Context) {
	f.mu.Lock()
	if len(f.byMerch) == 0 {
		f.mu.Unlock()
		return
	}
	taken := f.byMerch
	items := make([]item, 0, len(taken)+f.nseen)
	f.byMerch, f.nseen = make(map[string]*pending, len(taken)), 0
	f.mu.Unlock()
	now := time.Now()
	for mid, p := range taken {
		if p.ack > 0 {
			items = append(items, item{merchant: mid, ack: p.ack, first: cmp.Or(p.ackFirst, now)})
		}
		for no, first := range p.seen {
			items = append(items, item{merchant: mid, orderNo: no, first: cmp.Or(first, now)})
		}
	}
	if len(items) == 0 {
		return
	}
	batches := slices.Collect(slices.Chunk(items, wire.MaxReceiptItems))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.Budget)
	defer cancel()
	next := make(chan []item)
	var (
		wg      sync.WaitGroup
		failMu  sync.Mutex
		failed  int
		lastErr error
	)
	for range min(f.cfg.Concurrency, len(batches)) {
		wg.Go(func() {
			for b := range next {
				if n, err := f.send(ctx, b); n > 0 {
					failMu.Lock()
					failed, lastErr = failed+n, err
					failMu.Unlock()
				}
			}
		})
	}
	for _, b := range batches {
		next <- b
	}
	close(next)
	wg.Wait()
	if failed > 0 {
		// One line per flush: an order API that is down fails every batch.
		f.log.LogAttrs(ctx, slog.LevelWarn, "receipts given up: the order api did not take them in time",
			slog.Int("failed", failed), slog.Int("receipts", len(items)), logging.Err(lastErr))
	}
}

// send makes one batch request, retrying transient failures while ctx
// lasts and then in later flushes (retry), and counts its items' results.
// It returns how many receipts it gave up, with the last error.
func (f *Forwarder) send(ctx context.Context, items []item) (int, error) {
	var b wire.ReceiptBatch
	for _, it := range items {
		if it.orderNo == "" {
			b.Acks = append(b.Acks, wire.AckReceipt{MerchantID: it.merchant, Seq: it.ack})
		} else {
			b.Seen = append(b.Seen, wire.SeenReceipt{MerchantID: it.merchant, OrderNo: it.orderNo})
		}
	}
	wait := retryBase
	for {
		res, err := f.api.Receipts(ctx, b)
		switch {
		case err == nil:
			f.counted(ctx, res)
			return 0, nil
		case !transient(err):
			// The gateway sends only well-formed batches with its service
			// token: a refusal of a whole batch is a misconfiguration.
			f.ack.rejected.Add(float64(len(b.Acks)))
			f.seen.rejected.Add(float64(len(b.Seen)))
			f.log.LogAttrs(ctx, slog.LevelError, "receipts batch refused by the order api",
				slog.Int("acks", len(b.Acks)), slog.Int("seen", len(b.Seen)), logging.Err(err))
			return 0, nil
		}
		d := rand.N(wait) + 1
		wait = min(2*wait, retryCap)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
			failed := 0
			for _, it := range items {
				if f.retry(it) {
					continue
				}
				failed++
				if it.orderNo == "" {
					f.ack.failed.Inc()
				} else {
					f.seen.failed.Inc()
				}
			}
			return failed, err
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}

// counted counts a batch the order API took. Skipped receipts are a
// client's mistake (an ack above the merchant's seq, another merchant's
// order), not the gateway's.
func (f *Forwarder) counted(ctx context.Context, res wire.ReceiptResult) {
	f.ack.ok.Add(float64(res.Acks.Applied))
	f.ack.rejected.Add(float64(res.Acks.Skipped))
	f.seen.ok.Add(float64(res.Seen.Applied))
	f.seen.rejected.Add(float64(res.Seen.Skipped))
	if res.Acks.Skipped+res.Seen.Skipped > 0 {
		f.log.LogAttrs(ctx, slog.LevelDebug, "receipts skipped by the order api",
			slog.Int("acks", res.Acks.Skipped), slog.Int("seen", res.Seen.Skipped))
	}
}

// transient reports whether a failed request may succeed when repeated:
// no answer, or an overloaded or failing order API.
func transient(err error) bool {
	var e *orderapi.Error
	if !errors.As(err, &e) {
		return true
	}
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests
}
