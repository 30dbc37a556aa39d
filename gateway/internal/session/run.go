package session

import (
	"context"
	"log/slog"
	"time"

	"orderpush/gateway/internal/session/sendq"
	"orderpush/pkg/logging"
)

// attachment is the transport a session writes to.
type attachment struct {
	t Transport
	w Writer
}

// Start attaches a push transport and starts serving: the first drainer
// (for what was queued at admission), the token expiry timer and, when
// replay is not nil, the replay. ctx bounds calls made for the session (the
// order API, the replay); ending it does not end the session, Close does.
func (s *Session) Start(ctx context.Context, w Writer, replay func(context.Context) error) {
	s.attach(ctx, &attachment{t: w, w: w}, replay)
	go s.drain() // the queue was created active: this is its first drainer
}

func (s *Session) attach(ctx context.Context, a *attachment, replay func(context.Context) error) {
	// The session's context ends with the session: a replay still
	// fetching and a process call in flight give up.
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.att.Store(a)
	s.startTimers()
	if replay != nil {
		s.replay.Go(func() {
			if err := replay(s.ctx); err != nil && !s.closing() && s.ctx.Err() == nil {
				s.logf(slog.LevelWarn, "replay failed", logging.Err(err))
				s.Close(TryAgainLater, "replay failed")
			}
		})
	}
}

// End is called once by the transport when its connection is over. It
// closes the session if it is still open, stops the replay and the timers,
// and returns when the write side has finished.
func (s *Session) End() {
	s.Close(Normal, "")
	s.stopTimers()
	a := s.att.Load()
	if a == nil {
		// Never attached: nothing runs.
		s.q.Close()
		s.finished()
		return
	}
	s.cancel()
	s.replay.Wait()
	s.writing.Wait()
}

// wake is the queue's wake: frames were pushed to an idle queue, or Close
// wants the close written.
func (s *Session) wake() {
	if s.att.Load() != nil {
		go s.drain()
	}
	// Not attached yet: the queue stays active until the transport's first
	// drainer, which will see what was pushed.
}

// drain is the push write side while it runs (one at a time, sendq
// guarantees it): it writes what is queued until the queue is empty, and on
// Close writes the close and ends the connection.
func (s *Session) drain() {
	w := s.att.Load().w
	var batch []sendq.Entry
	for {
		if s.closing() {
			if s.reason != TryAgainLater && !s.aborted.Load() {
				// What is already queued goes out before the goodbye (a
				// flood's rate_limited error, the last events before a
				// drain); a slow consumer's queue is dropped.
				batch, _ = s.q.Take(batch)
				now := time.Now().UnixMilli()
				n, _ := w.WriteFrames(batch)
				s.sent(batch[:n], now)
			}
			s.finish(w)
			return
		}
		var more bool
		batch, more = s.q.Take(batch)
		if !more {
			return
		}
		now := time.Now().UnixMilli()
		n, err := w.WriteFrames(batch)
		s.sent(batch[:n], now)
		if err != nil {
			if !s.closing() {
				s.logf(slog.LevelDebug, "write failed", logging.Err(err))
			}
			s.Close(GoingAway, "")
			w.CloseNow()
			s.q.Close() // wakes a replay blocked on a full queue
			s.finished()
			return
		}
	}
}

// finish writes the close and ends the connection.
func (s *Session) finish(w Writer) {
	s.q.Close()
	defer s.finished()
	if s.aborted.Load() {
		// Nobody would answer a close handshake (it would wait 5 s).
		w.CloseNow()
		return
	}
	if err := w.WriteClose(s.reason, s.text); err != nil {
		s.logf(slog.LevelDebug, "close incomplete", slog.String("reason", s.reason.String()), logging.Err(err))
	}
}

// sent counts written frames and observes the delivery lag of live ones.
func (s *Session) sent(es []sendq.Entry, now int64) {
	if len(es) == 0 {
		return
	}
	s.m.FramesSent.Add(float64(len(es)))
	for _, e := range es {
		if e.TS > 0 {
			s.m.DeliveryLag.Observe(float64(max(now-e.TS, 0)) / 1000)
		}
	}
}

// startTimers arms the token expiry. A time.AfterFunc timer costs no
// goroutine until it fires.
func (s *Session) startTimers() {
	if s.expiry.IsZero() {
		return
	}
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	if s.stopped {
		return
	}
	s.expire = time.AfterFunc(time.Until(s.expiry), func() {
		s.Close(Policy, "token expired")
	})
}

func (s *Session) stopTimers() {
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	s.stopped = true
	if s.expire != nil {
		s.expire.Stop()
	}
}
