package hub

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"orderpush/gateway/internal/backfill"
	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/session/sendq"
	"orderpush/pkg/logging"
	"orderpush/pkg/stream"
	"orderpush/pkg/wire"
)

// NoSince is Join's since when the client gave none.
const NoSince = -1

// ErrOverflow is returned by Replay when the socket fell too far behind.
var ErrOverflow = errors.New("socket could not keep up")

// Subscription is one socket's place in a merchant's topic.
type Subscription struct {
	h     *Hub
	t     *topic
	m     Member
	since uint64       // replay from here (exclusive), when replaying
	hello stream.State // what hello told the socket

	// Guarded by t.mu.
	last      uint64 // the socket's cursor: last seq it was sent or told
	replaying bool   // live frames go to buf until Replay finishes
	dead      bool   // overflowed or left: sent nothing more
	buf       []bufEntry
	idx       int // position in t.subs

	leave sync.Once
}

// bufEntry is a live frame, or a resync, that arrived during a replay.
type bufEntry struct {
	frame  frame
	resync bool
	state  stream.State
}

// Join adds m to the merchant's topic (subscribing and reading the state if
// it is the first local socket) and queues its hello, before any live frame.
// since is the client's last seen seq, or NoSince. A since above the current
// seq gets resync right after hello; a smaller one is replayed by Replay.
func (h *Hub) Join(ctx context.Context, mid string, m Member, since int64) (*Subscription, error) {
	t, fresh, err := h.acquire(ctx, mid)
	if err != nil {
		return nil, err
	}
	// ARCHITECTURE.md "How an order travels" 6: subscribed first, then read, so nothing falls between.
	// The topic's own state is as fresh when this call created it.
	t.mu.Lock()
	have := t.head
	t.mu.Unlock()
	st, stOK := h.src.Newer(ctx, mid, have, since, !fresh)
	t.mu.Lock()
	hello := stream.State{Seq: t.head, OrderSum: t.orderSum}
	if stOK && st.Seq > hello.Seq {
		hello = st
	}
	s := &Subscription{h: h, t: t, m: m, hello: hello, last: hello.Seq}
	if !m.TrySend(h.helloEntry(wire.EventHello, t, m, hello)) {
		t.mu.Unlock()
		h.release(t)
		return nil, ErrOverflow
	}
	switch {
	case since < 0 || uint64(since) == hello.Seq:
	case uint64(since) > hello.Seq:
		h.m.Resyncs.WithLabelValues(metrics.ResyncSinceAhead).Inc()
		m.TrySend(h.helloEntry(wire.EventResync, t, m, hello))
	default:
		s.since, s.replaying = uint64(since), true
	}
	s.idx = len(t.subs)
	t.subs = append(t.subs, s)
	t.mu.Unlock()
	return s, nil
}

// Hello is the state the socket's hello carried.
func (s *Subscription) Hello() stream.State { return s.hello }

// Replay sends the events since < seq <= hello.seq, then what arrived live
// meanwhile, then switches the socket to live delivery. Without a replay to
// do it returns at once. It blocks on the socket's queue, so it runs on the
// socket's own goroutine, and it must be called once.
func (s *Subscription) Replay(ctx context.Context) error {
	h, t := s.h, s.t
	t.mu.Lock()
	replaying := s.replaying
	t.mu.Unlock()
	if !replaying {
		return nil
	}
	upto := s.hello.Seq
	var r backfill.Range
	var err error
	if upto-s.since <= h.cfg.ReplayMax {
		r, err = h.src.Range(ctx, t.merchant, s.since, upto)
		if err != nil && ctx.Err() == nil {
			// One retry for a source that blinked.
			if sleep(ctx, 200*time.Millisecond) {
				r, err = h.src.Range(ctx, t.merchant, s.since, upto)
			}
		}
	}
	for _, ev := range r.Events {
		if err := s.m.Send(ctx, sendq.Entry{Data: ev.Frame, Seq: ev.Seq}); err != nil {
			return err
		}
	}
	h.m.Replays.Inc()
	h.m.ReplayedFrames.Add(float64(len(r.Events)))
	if r.Last(s.since) < upto {
		attrs := []slog.Attr{slog.String(logging.KeyMerchant, t.merchant), slog.String(logging.KeyConn, s.m.ID()),
			slog.Uint64("since", s.since), slog.Uint64(logging.KeySeq, upto)}
		if err != nil {
			attrs = append(attrs, logging.Err(err))
		}
		h.log.LogAttrs(ctx, slog.LevelInfo, "replay could not cover the gap, sending resync", attrs...)
		h.m.Resyncs.WithLabelValues(metrics.ResyncReplay).Inc()
		if err := s.m.Send(ctx, h.helloEntry(wire.EventResync, t, s.m, s.hello)); err != nil {
			return err
		}
	}
	return s.goLive(ctx, upto)
}

// goLive sends what was buffered during the replay, skipping what the
// replay covered, until the buffer is empty; then the socket is live.
func (s *Subscription) goLive(ctx context.Context, last uint64) error {
	h, t := s.h, s.t
	for {
		t.mu.Lock()
		if s.dead {
			t.mu.Unlock()
			return ErrOverflow
		}
		batch := s.buf
		s.buf = nil
		if len(batch) == 0 {
			s.last, s.replaying = last, false
			t.mu.Unlock()
			return nil
		}
		t.mu.Unlock()
		for _, b := range batch {
			e := b.frame.entry()
			switch {
			case b.resync:
				if b.state.Seq <= last {
					continue
				}
				last = b.state.Seq
				h.m.Resyncs.WithLabelValues(metrics.ResyncGap).Inc()
				e = h.helloEntry(wire.EventResync, t, s.m, b.state)
			case b.frame.seq == 0:
			case b.frame.seq <= last:
				continue
			default:
				last = b.frame.seq
			}
			if err := s.m.Send(ctx, e); err != nil {
				return err
			}
		}
	}
}

// Leave removes the socket from its topic; the last one out unsubscribes.
// It is idempotent.
func (s *Subscription) Leave() {
	s.leave.Do(func() {
		t := s.t
		t.mu.Lock()
		last := len(t.subs) - 1
		if s.idx <= last && t.subs[s.idx] == s {
			t.subs[s.idx] = t.subs[last]
			t.subs[s.idx].idx = s.idx
			t.subs[last] = nil
			t.subs = t.subs[:last]
		}
		s.dead, s.buf = true, nil
		t.mu.Unlock()
		s.h.release(t)
	})
}

// buffer keeps a live frame for a replaying socket. t.mu must be held.
func (s *Subscription) buffer(b bufEntry) {
	if len(s.buf) >= s.h.cfg.Buffer {
		s.overflow()
		return
	}
	s.buf = append(s.buf, b)
}

// overflow marks the socket as unable to keep up. t.mu must be held.
func (s *Subscription) overflow() {
	if s.dead {
		return
	}
	s.dead, s.buf = true, nil
	s.m.Overflow()
}
