package server

import (
	"context"
	"log/slog"
	"time"

	"orderpush/gateway/internal/session"
	"orderpush/gateway/internal/session/sendq"
	"orderpush/pkg/logging"
	"orderpush/pkg/wire"
)

// beatLoop keeps this replica's liveness key alive (presence counts only
// connections of live replicas) and retries failed presence removals. A
// failed beat is retried after half a second rather than a full interval.
func (s *Server) beatLoop(ok bool) {
	t := time.NewTimer(s.nextBeat(ok))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			t.Reset(s.nextBeat(s.beat()))
		case <-s.base.Done():
			return
		}
	}
}

func (s *Server) nextBeat(ok bool) time.Duration {
	if ok {
		return s.cfg.beatInterval()
	}
	return min(s.cfg.beatInterval(), 500*time.Millisecond)
}

// beat renews the liveness key; it reports success.
func (s *Server) beat() bool {
	ctx, cancel := context.WithTimeout(s.base, s.cfg.beatInterval())
	defer cancel()
	wasAlive, err := s.presence.Renew(ctx, s.cfg.NodeID)
	if err != nil {
		s.m.PresenceErrors.Inc()
		s.log.LogAttrs(ctx, slog.LevelWarn, "presence beat failed", logging.Err(err))
		return false
	}
	if !wasAlive {
		// The liveness key had lapsed (Redis restarted empty, or beats were
		// late): readers may have dropped our entries as dead.
		s.readdAll()
	}
	s.mu.Lock()
	retry := make(map[string]string, len(s.removals))
	for c, m := range s.removals {
		retry[c] = m
	}
	s.mu.Unlock()
	for conn, mid := range retry {
		if err := s.presence.Remove(ctx, conn, mid); err != nil {
			break
		}
		s.mu.Lock()
		delete(s.removals, conn)
		s.mu.Unlock()
	}
	return true
}

// presenceAdd registers a connection. A failure (Redis down) is counted and
// repaired by the re-registration after Redis comes back.
func (s *Server) presenceAdd(ctx context.Context, conn, mid string) {
	if err := s.adds.add(ctx, conn, mid); err != nil {
		s.m.PresenceErrors.Inc()
		s.log.LogAttrs(ctx, slog.LevelWarn, "presence add failed", slog.String(logging.KeyConn, conn), logging.Err(err))
	}
}

// presenceRemove forgets a connection, or queues the removal for the next
// beat so a closed socket never keeps counting.
func (s *Server) presenceRemove(conn, mid string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.presence.Remove(ctx, conn, mid); err != nil {
		s.m.PresenceErrors.Inc()
		s.mu.Lock()
		s.removals[conn] = mid
		s.mu.Unlock()
	}
}

// reregister beats at once after the node channel was resubscribed, i.e.
// after a Redis reconnect; if Redis came back empty the beat finds the
// liveness key gone and writes every open connection again.
func (s *Server) reregister() {
	if !s.reregs.CompareAndSwap(false, true) {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer s.reregs.Store(false)
		s.beat()
	}()
}

// readdAll writes every open connection into presence again.
func (s *Server) readdAll() {
	for _, c := range s.snapshot() {
		if s.base.Err() != nil {
			return
		}
		ctx, cancel := context.WithTimeout(s.base, 2*time.Second)
		s.presenceAdd(ctx, c.ID(), c.Merchant())
		cancel()
	}
}

// notice delivers a wire.Notice from this replica's channel to the one
// socket it names.
func (s *Server) notice(payload []byte) {
	n, err := wire.ParseNotice(payload)
	if err != nil {
		s.m.Notices.WithLabelValues("bad").Inc()
		return
	}
	s.mu.Lock()
	c := s.conns[n.ConnID]
	s.mu.Unlock()
	switch {
	case c == nil:
		s.m.Notices.WithLabelValues("unknown_conn").Inc()
	case !c.TrySend(sendq.Entry{Data: n.Frame}):
		s.m.Notices.WithLabelValues("full").Inc()
		c.Overflow()
	default:
		s.m.Notices.WithLabelValues("delivered").Inc()
	}
}

// track makes a socket reachable for notices and the drain.
func (s *Server) track(c *session.Session) {
	s.mu.Lock()
	s.conns[c.ID()] = c
	draining := s.draining.Load()
	s.mu.Unlock()
	if draining {
		c.Close(session.GoingAway, "going away")
	}
}

func (s *Server) untrack(c *session.Session) {
	s.mu.Lock()
	delete(s.conns, c.ID())
	s.mu.Unlock()
}
