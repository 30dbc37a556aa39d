package subscriber

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"orderpush/pkg/logging"
)

// startLoop starts the goroutine that drains ps. mu must be held.
func (s *Subscriber) startLoop(g *group, ps *redis.PubSub) {
	ch := ps.ChannelWithSubscriptions(redis.WithChannelSize(channelBuffer))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for msg := range ch {
			switch m := msg.(type) {
			case *redis.Message:
				s.m.RedisMessages.Inc()
				s.h.Message(m.Channel, []byte(m.Payload))
			case *redis.Subscription:
				switch m.Kind {
				case "subscribe", "ssubscribe":
					s.confirmed(g, ps, m.Channel, m.Count)
				case "unsubscribe", "sunsubscribe":
					s.unsubscribed(g, ps, m.Channel)
				}
			}
		}
	}()
}

// confirmed handles a subscription confirmation.
func (s *Subscriber) confirmed(g *group, ps *redis.PubSub, channel string, count int) {
	s.mu.Lock()
	if g.ps != ps {
		s.mu.Unlock()
		return // from a PubSub replaced by rebuild
	}
	if count == 1 {
		// The first confirmation on a fresh connection: after the very first
		// one, that means go-redis reconnected (or a rebuild did).
		if g.seenAck {
			s.m.RedisReconnects.Inc()
			s.log.LogAttrs(context.Background(), slog.LevelInfo, "redis pub/sub reconnected", slog.Int("group", g.key))
		}
		g.seenAck = true
	}
	cs := g.chans[channel]
	if cs == nil {
		s.mu.Unlock()
		return // a late confirmation of a channel we no longer track
	}
	cs.acked++
	gap := false
	if cs.acked > cs.sent {
		// Not an answer to our command: a resubscription after reconnect.
		cs.acked = cs.sent
		gap = cs.refs > 0
	}
	kept := cs.waiters[:0]
	for _, w := range cs.waiters {
		if w.target <= cs.acked {
			close(w.done)
		} else {
			kept = append(kept, w)
		}
	}
	cs.waiters = kept
	s.forgetIfIdle(g, channel, cs)
	s.mu.Unlock()
	if gap {
		s.h.Resubscribed(channel)
	}
}

// unsubscribed handles an unsubscribe notice. One we did not ask for (Redis
// Cluster drops sharded subscribers of a slot that moved) means the PubSub
// must be rebuilt against the slot's new owner; the notices of the slot's
// other channels find the rebuild under way.
func (s *Subscriber) unsubscribed(g *group, ps *redis.PubSub, channel string) {
	s.mu.Lock()
	cs := g.chans[channel]
	lost := s.cluster != nil && g.ps == ps && !g.rebuilding && !g.closed && !s.closed && cs != nil && cs.refs > 0
	if lost {
		g.rebuilding = true
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if lost {
		go func() {
			defer s.wg.Done()
			s.rebuild(g, ps)
		}()
	}
}

// Rebuild attempts: each may wait this long for its connection and first
// confirmation; between failed ones the wait doubles up to the maximum.
const (
	rebuildTimeout    = 10 * time.Second
	rebuildBackoff    = 100 * time.Millisecond
	rebuildMaxBackoff = 5 * time.Second
)

// rebuild replaces g's PubSub, old, with one subscribed to every wanted
// channel on the node that owns the slot now. It dials and waits for the
// first confirmation holding no lock, so Subscribe and Unsubscribe (of this
// slot too) go on meanwhile; swap applies what they changed. A new PubSub
// that reached a node still on the old slot map (MOVED) or none is dropped,
// and the next attempt follows the reloaded map, until one holds, the group
// is gone or Close. Each confirmation then counts as a resubscription (a
// possible gap), which is what it is.
func (s *Subscriber) rebuild(g *group, old *redis.PubSub) {
	defer func() {
		s.mu.Lock()
		g.rebuilding = false
		s.mu.Unlock()
	}()
	s.log.LogAttrs(s.ctx, slog.LevelWarn, "sharded subscription dropped by redis, rebuilding", slog.Int("slot", g.key))
	backoff := rebuildBackoff
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				t.Stop()
				return
			}
			backoff = min(2*backoff, rebuildMaxBackoff)
		}
		chans := s.stillWanted(g, old)
		if len(chans) == 0 {
			return
		}
		s.cluster.ReloadState(s.ctx)
		ps, first, err := s.subscribeNew(chans)
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.log.LogAttrs(s.ctx, slog.LevelWarn, "rebuilding sharded subscription failed, retrying",
				slog.Int("slot", g.key), slog.Int("attempt", attempt+1), logging.Err(err))
			continue
		}
		if s.swap(g, old, ps, chans) {
			// Received by subscribeNew, before the loop started; handled
			// outside g.cmdMu like every confirmation.
			s.confirmed(g, ps, first.Channel, first.Count)
		}
		return
	}
}

// stillWanted lists the channels of g to rebuild, none once old is no
// longer g's PubSub, g is closed or the Subscriber is.
func (s *Subscriber) stillWanted(g *group, old *redis.PubSub) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g.ps != old || g.closed || s.closed {
		return nil
	}
	var chans []string
	for ch, cs := range g.chans {
		if cs.refs > 0 {
			chans = append(chans, ch)
		}
	}
	return chans
}

// subscribeNew opens a PubSub subscribed to chans (one slot) and waits for
// the first confirmation, which proves it reached the slot's owner.
func (s *Subscriber) subscribeNew(chans []string) (*redis.PubSub, *redis.Subscription, error) {
	ctx, cancel := context.WithTimeout(s.ctx, rebuildTimeout)
	defer cancel()
	ps := s.cluster.SSubscribe(ctx, chans...)
	msg, err := ps.Receive(ctx)
	if err == nil {
		if sub, ok := msg.(*redis.Subscription); ok && sub.Kind == "ssubscribe" {
			return ps, sub, nil
		}
		err = fmt.Errorf("first reply %v, want a confirmation", msg)
	}
	_ = ps.Close()
	return nil, nil, err
}

// swap puts ps, subscribed to had, in old's place unless the group moved
// on meanwhile, and brings it up to date: channels subscribed since had was
// taken are subscribed on ps (their confirmation wakes their Subscribe),
// channels given up are unsubscribed. g.cmdMu orders these commands with
// those of concurrent Subscribe and Unsubscribe calls. It reports whether
// ps took old's place.
func (s *Subscriber) swap(g *group, old, ps *redis.PubSub, had []string) bool {
	g.cmdMu.Lock()
	defer g.cmdMu.Unlock()
	s.mu.Lock()
	if g.ps != old || g.closed || s.closed {
		s.mu.Unlock()
		_ = ps.Close()
		return false
	}
	g.ps = ps
	g.seenAck = true
	s.startLoop(g, ps)
	var add, drop []string
	in := make(map[string]bool, len(had))
	for _, ch := range had {
		in[ch] = true
		if cs := g.chans[ch]; cs == nil || cs.refs == 0 {
			drop = append(drop, ch)
		}
	}
	for ch, cs := range g.chans {
		if cs.refs > 0 && !in[ch] {
			add = append(add, ch)
		}
	}
	s.mu.Unlock()
	_ = old.Close()
	ctx, cancel := context.WithTimeout(s.ctx, rebuildTimeout)
	defer cancel()
	if len(add) > 0 {
		if err := ps.SSubscribe(ctx, add...); err != nil {
			s.log.LogAttrs(ctx, slog.LevelDebug, "subscribe command failed, waiting for reconnect", slog.Int("slot", g.key), logging.Err(err))
		}
	}
	if len(drop) > 0 {
		if err := ps.SUnsubscribe(ctx, drop...); err != nil {
			s.log.LogAttrs(ctx, slog.LevelDebug, "unsubscribe command failed", slog.Int("slot", g.key), logging.Err(err))
		}
	}
	return true
}
