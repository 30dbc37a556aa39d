// Package outbox gets committed merchant events from the event log into
// Redis (ARCHITECTURE.md "How an order travels" 2):
//
//   - PublishCommitted, the fast path, runs right after a commit (an order
//     group's, a receipts batch's, a process or seen), before the requests
//     are answered, and publishes their events through the atomic stream
//     script in one pipelined round trip. The rows are then marked
//     published in batches.
//   - Run's relay republishes, in seq order per merchant, every row still
//     unpublished after a grace period: Redis was down, or the process died
//     between commit and publish. Several replicas may relay at once
//     (store.Relay locks per merchant on PostgreSQL).
//   - Run also prunes published rows older than the retention.
//
// Publishing twice is harmless: the stream script ignores a seq already in
// the merchant's history. An Outbox is safe for concurrent use.
package outbox

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"orderpush/orderapi/internal/metrics"
	"orderpush/orderapi/internal/store"
	"orderpush/pkg/logging"
	"orderpush/pkg/stream/publish"
)

// Config tunes the outbox. Zero values mean the defaults in brackets.
type Config struct {
	// RelayInterval is how often the relay looks for unpublished rows [1s].
	RelayInterval time.Duration
	// Grace is how old an unpublished row must be before the relay takes it
	// over from the fast path [3s].
	Grace time.Duration
	// Batch bounds the rows relayed per merchant and pass [500].
	Batch int
	// PublishTimeout bounds one fast-path publish [2s].
	PublishTimeout time.Duration
	// Cooldown is how long the fast path leaves events to the relay after
	// a failed publish, so a Redis outage costs one slow attempt per
	// cooldown, not one per order [1s].
	Cooldown time.Duration
	// Retention is EVENT_RETENTION: published rows older than this are
	// deleted [168h].
	Retention time.Duration
	// PruneInterval is how often pruning runs [1m].
	PruneInterval time.Duration
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.RelayInterval, time.Second)
	def(&c.Grace, 3*time.Second)
	def(&c.PublishTimeout, 2*time.Second)
	def(&c.Cooldown, time.Second)
	def(&c.Retention, 168*time.Hour)
	def(&c.PruneInterval, time.Minute)
	if c.Batch <= 0 {
		c.Batch = 500
	}
}

// Outbox publishes committed events.
type Outbox struct {
	cfg     Config
	store   *store.Store
	streams *publish.Publisher
	m       *metrics.Metrics
	log     *slog.Logger
	now     func() time.Time

	// marks carries keys the fast path published to markLoop. Never closed.
	marks chan store.EventKey
	// brokenUntil (Unix ns) is when the fast path may try Redis again.
	brokenUntil atomic.Int64
}

// markQueue bounds keys waiting to be marked. A full queue drops keys: the
// relay finds those rows later, sees them in history and marks them then.
const markQueue = 8192

// New returns an Outbox; Run must run for rows to be marked, relayed and
// pruned.
func New(cfg Config, st *store.Store, streams *publish.Publisher, m *metrics.Metrics, log *slog.Logger) *Outbox {
	cfg.defaults()
	return &Outbox{cfg: cfg, store: st, streams: streams, m: m, log: log, now: time.Now,
		marks: make(chan store.EventKey, markQueue)}
}

// PublishCommitted is the fast path for the events of a group commit
// (store.OnCommit): all of them in one pipelined round trip, in the given
// order, which is seq order per merchant. It never fails: what it cannot
// publish stays unpublished in the log for the relay; a failure of any
// event starts the cooldown.
func (o *Outbox) PublishCommitted(ctx context.Context, evs []store.Event) {
	if len(evs) == 0 || o.now().UnixNano() < o.brokenUntil.Load() {
		return
	}
	// The request may end (client gone) while we publish; the event is
	// committed either way, so finish on our own deadline.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.cfg.PublishTimeout)
	defer cancel()
	batch := make([]publish.Event, len(evs))
	for i, ev := range evs {
		batch[i] = publish.Event{MerchantID: ev.MerchantID, Seq: ev.Seq, OrderSum: ev.OrderSum, Frame: []byte(ev.Frame)}
	}
	var (
		failed int
		first  error // names the event
	)
	for i, err := range o.streams.PublishBatch(ctx, batch) {
		if err != nil {
			if failed == 0 {
				first = err
			}
			failed++
			continue
		}
		select {
		case o.marks <- store.EventKey{MerchantID: evs[i].MerchantID, Seq: evs[i].Seq}:
		default:
		}
	}
	if failed > 0 {
		o.m.PublishErrors.WithLabelValues("fast").Add(float64(failed))
		o.brokenUntil.Store(o.now().Add(o.cfg.Cooldown).UnixNano())
		o.log.Warn("publish failed; the relay will retry", "failed", failed, "events", len(evs), logging.Err(first))
	}
}

// Run marks, relays and prunes until ctx ends, then marks what the fast path
// published meanwhile and returns. Call it once.
func (o *Outbox) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { o.markLoop(ctx) })
	wg.Go(func() { o.relayLoop(ctx) })
	wg.Go(func() { o.pruneLoop(ctx) })
	wg.Wait()
	return nil
}

// markLoop records published keys in batches: one UPDATE for many orders
// instead of one write transaction each.
func (o *Outbox) markLoop(ctx context.Context) {
	const maxBatch = 256
	batch := make([]store.EventKey, 0, maxBatch)
	// Marking outlives ctx by one last flush at shutdown, so each flush has
	// its own deadline instead of ctx's cancellation.
	flush := func() {
		if len(batch) == 0 {
			return
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := o.store.MarkPublished(fctx, batch); err != nil {
			// The relay will find these rows, see them in history, and
			// mark them.
			o.log.Warn("mark published failed", "events", len(batch), logging.Err(err))
		}
		batch = batch[:0]
	}
	add := func(k store.EventKey) {
		batch = append(batch, k)
		if len(batch) == maxBatch {
			flush()
		}
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case k := <-o.marks:
			add(k)
		case <-tick.C:
			flush()
		case <-ctx.Done():
			for {
				select {
				case k := <-o.marks:
					add(k)
				default:
					flush()
					return
				}
			}
		}
	}
}

func (o *Outbox) relayLoop(ctx context.Context) {
	tick := time.NewTicker(o.cfg.RelayInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// Keep going while there is a backlog, so a long outage drains at
		// Redis speed rather than one batch per interval.
		for ctx.Err() == nil {
			cutoff := o.now().Add(-o.cfg.Grace).UnixMilli()
			n, err := o.store.Relay(ctx, cutoff, o.cfg.Batch, o.relayPublish)
			if err != nil && ctx.Err() == nil {
				o.log.Warn("outbox relay failed", logging.Err(err))
			}
			if err != nil || n == 0 {
				break
			}
		}
	}
}

// relayPublish publishes one merchant's events in order and stops at the
// first failure.
func (o *Outbox) relayPublish(ctx context.Context, evs []store.Event) int {
	for i, ev := range evs {
		pctx, cancel := context.WithTimeout(ctx, o.cfg.PublishTimeout)
		fresh, err := o.streams.Publish(pctx, ev.MerchantID, ev.Seq, ev.OrderSum, []byte(ev.Frame))
		cancel()
		if err != nil {
			o.m.PublishErrors.WithLabelValues("relay").Inc()
			o.log.Debug("relay publish failed", logging.KeyMerchant, ev.MerchantID, logging.KeySeq, ev.Seq, logging.Err(err))
			return i
		}
		if fresh {
			o.m.RelayPublished.Inc()
		}
	}
	return len(evs)
}

func (o *Outbox) pruneLoop(ctx context.Context) {
	tick := time.NewTicker(o.cfg.PruneInterval)
	defer tick.Stop()
	for {
		n, err := o.store.Prune(ctx, o.now().Add(-o.cfg.Retention).UnixMilli())
		switch {
		case err != nil && ctx.Err() == nil:
			o.log.Warn("prune events failed", logging.Err(err))
		case n > 0:
			o.m.EventsPruned.Add(float64(n))
			o.log.Info("pruned events", "events", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
