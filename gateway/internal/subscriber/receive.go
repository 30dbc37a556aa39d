package subscriber

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
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
		// one, that means go-redis reconnected.
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
// must be rebuilt against the slot's new owner.
func (s *Subscriber) unsubscribed(g *group, ps *redis.PubSub, channel string) {
	s.mu.Lock()
	cs := g.chans[channel]
	lost := s.cluster != nil && g.ps == ps && !g.closed && !s.closed && cs != nil && cs.refs > 0
	if lost {
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

// rebuild replaces g's PubSub with a new one subscribed to every wanted
// channel, on the node that owns the slot now. Each confirmation then counts
// as a resubscription (a possible gap), which is what it is.
func (s *Subscriber) rebuild(g *group, old *redis.PubSub) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g.cmdMu.Lock()
	defer g.cmdMu.Unlock()
	s.log.LogAttrs(ctx, slog.LevelWarn, "sharded subscription dropped by redis, rebuilding", slog.Int("slot", g.key))
	s.cluster.ReloadState(ctx)
	s.mu.Lock()
	if g.ps != old || g.closed || s.closed {
		s.mu.Unlock()
		return
	}
	var chans []string
	for ch, cs := range g.chans {
		if cs.refs > 0 {
			chans = append(chans, ch)
		}
	}
	if len(chans) == 0 {
		s.mu.Unlock()
		return
	}
	_ = old.Close()
	g.ps = s.cluster.SSubscribe(ctx, chans...)
	g.seenAck = true
	s.startLoop(g, g.ps)
	s.mu.Unlock()
}
