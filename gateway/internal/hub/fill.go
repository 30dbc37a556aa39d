package hub

import (
	"context"
	"log/slog"
	"time"

	"orderpush/gateway/internal/backfill"
	"orderpush/gateway/internal/metrics"
	"orderpush/pkg/logging"
	"orderpush/pkg/stream"
	"orderpush/pkg/wire"
)

// startFill runs a fill for t in the background.
func (h *Hub) startFill(t *topic) {
	t.mu.Lock()
	h.startFillLocked(t)
	t.mu.Unlock()
}

// startFillLocked starts a fill goroutine unless one runs, in which case
// that one goes another round. t.mu must be held.
func (h *Hub) startFillLocked(t *topic) {
	if t.closed || !t.inited {
		return
	}
	if t.filling {
		t.refill = true
		return
	}
	t.filling = true
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.fill(t)
	}()
}

// fill brings t's head up to its earliest pending frame, or, when nothing is
// pending (after a Redis reconnect), up to the merchant's current seq.
func (h *Hub) fill(t *topic) {
	for {
		h.fillOnce(h.ctx, t)
		t.mu.Lock()
		if t.refill && !t.closed && h.ctx.Err() == nil {
			t.refill = false
			t.mu.Unlock()
			continue
		}
		t.filling = false
		if len(t.pending) > 0 {
			h.scheduleFill(t) // a newer gap: give it its wait
		}
		t.mu.Unlock()
		return
	}
}

func (h *Hub) fillOnce(ctx context.Context, t *topic) {
	// Bound concurrent fills: after a Redis reconnect every merchant of the
	// replica asks at once.
	select {
	case h.fillSem <- struct{}{}:
		defer func() { <-h.fillSem }()
	case <-ctx.Done():
		return
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	after, upto := t.head, t.minPending()
	t.mu.Unlock()
	if upto > 0 {
		upto--
	} else {
		st, err := h.stateWithRetry(ctx, t.merchant)
		if err != nil {
			// Nothing known is missing; the next event will show a gap.
			h.log.LogAttrs(ctx, slog.LevelWarn, "no state to check for missed events",
				slog.String(logging.KeyMerchant, t.merchant), logging.Err(err))
			return
		}
		upto = st.Seq
	}
	if upto <= after {
		return
	}
	var lastErr error
	for attempt := 1; ; attempt++ {
		var r backfill.Range
		var err error
		if upto-after <= h.cfg.ReplayMax {
			r, err = h.src.Range(ctx, t.merchant, after, upto)
		}
		t.mu.Lock()
		h.offerRange(t, r)
		after = t.head
		done := t.head >= upto || t.closed
		t.mu.Unlock()
		if done || ctx.Err() != nil {
			return
		}
		if err == nil || attempt == fillAttempts {
			lastErr = err
			break // nobody holds the missing event, or sources keep failing
		}
		if !sleep(ctx, time.Duration(attempt)*200*time.Millisecond) {
			return
		}
	}
	h.resyncTopic(ctx, t, upto, lastErr)
}

// offerRange feeds fetched events to the sequencer. t.mu must be held.
func (h *Hub) offerRange(t *topic, r backfill.Range) {
	for _, ev := range r.Events {
		f, err := parseFrame(ev.Frame)
		if err != nil || f.seq != ev.Seq {
			h.m.BadFrames.Inc()
			return // undeliverable: what follows stays a gap
		}
		h.offer(t, f)
	}
	if r.FromHistory > 0 {
		h.m.GapsFilled.WithLabelValues(metrics.SourceHistory).Add(float64(r.FromHistory))
	}
	if r.FromLog > 0 {
		h.m.GapsFilled.WithLabelValues(metrics.SourceEventLog).Add(float64(r.FromLog))
	}
}

// resyncTopic gives up on events up to upto: sockets behind get resync with
// the merchant's current state and the stream continues after it.
func (h *Hub) resyncTopic(ctx context.Context, t *topic, upto uint64, cause error) {
	st, serr := h.src.State(ctx, t.merchant)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.head >= upto {
		return
	}
	switch {
	case serr != nil:
		st = stream.State{Seq: upto, OrderSum: t.orderSum}
	case st.Seq < upto:
		// The merchant's state says these events do not exist: the publish
		// script raises the state before it publishes, so early frames
		// beyond it come from a publisher outside the contract. Drop them
		// rather than jump the stream past real events.
		for seq := range t.pending {
			if seq > st.Seq {
				delete(t.pending, seq)
				h.m.BadFrames.Inc()
			}
		}
		if st.Seq <= t.head {
			return
		}
		upto = st.Seq
	}
	attrs := []slog.Attr{slog.String(logging.KeyMerchant, t.merchant),
		slog.Uint64("from", t.head+1), slog.Uint64("to", upto)}
	if cause != nil {
		attrs = append(attrs, logging.Err(cause))
	}
	h.log.LogAttrs(ctx, slog.LevelWarn, "gap could not be filled, sending resync", attrs...)
	h.resync(t, st)
}

// resync moves head to st and tells every socket behind it. t.mu must be
// held.
func (h *Hub) resync(t *topic, st stream.State) {
	for _, s := range t.subs {
		switch {
		case s.dead:
		case s.replaying:
			s.buffer(bufEntry{resync: true, state: st})
		case s.last < st.Seq:
			s.last = st.Seq
			h.m.Resyncs.WithLabelValues(metrics.ResyncGap).Inc()
			if !s.m.TrySend(h.helloEntry(wire.EventResync, t, s.m, st)) {
				s.overflow()
			}
		}
	}
	t.head, t.orderSum = st.Seq, st.OrderSum
	h.afterJump(t)
}

func (h *Hub) stateWithRetry(ctx context.Context, mid string) (stream.State, error) {
	var err error
	for attempt := 1; ; attempt++ {
		var st stream.State
		if st, err = h.src.State(ctx, mid); err == nil || attempt == fillAttempts {
			return st, err
		}
		if !sleep(ctx, time.Duration(attempt)*200*time.Millisecond) {
			return st, ctx.Err()
		}
	}
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
