// Package subscriber keeps the gateway's Redis pub/sub subscriptions: one
// PubSub connection per process on a single Redis, one per hash slot on Redis
// Cluster (sharded pub/sub, SSUBSCRIBE), with dynamic subscribe/unsubscribe
// and confirmed subscriptions.
//
// go-redis reconnects and resubscribes by itself after any connection error;
// anything published meanwhile is lost (pub/sub is at-most-once). Each
// resubscription arrives as a *redis.Subscription on ChannelWithSubscriptions,
// and this package reports it per channel as Handler.Resubscribed: "this
// channel may have a gap", which the hub back-fills (ARCHITECTURE.md "How an order
// travels" 9).
//
// Why one PubSub per slot on a cluster: a ClusterClient PubSub is pinned to
// the node of its first channel, go-redis resubscribes all of a PubSub's
// channels in ONE command after a reconnect, and a command naming channels of
// different slots fails with CROSSSLOT (silently, for a later SSUBSCRIBE on
// the same PubSub). A PubSub per slot in use costs one connection per slot; a
// gateway holding merchants of many slots holds many connections.
//
// The Go channel of every PubSub is drained at once by one goroutine that
// calls the Handler; the Handler must not block. A Subscriber is safe for
// concurrent use.
package subscriber

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/redis/go-redis/v9"

	"orderpush/gateway/internal/metrics"
	"orderpush/pkg/logging"
)

// Handler receives what the subscriptions deliver. Its methods are called
// from the receiving goroutines and must return quickly without blocking.
type Handler interface {
	// Message is one message on a subscribed channel.
	Message(channel string, payload []byte)
	// Resubscribed says the channel was subscribed again after a connection
	// was lost: messages published meanwhile were missed.
	Resubscribed(channel string)
}

// channelBuffer is the Go channel size between go-redis's reader and ours.
// The reader blocks (and after a minute drops) only when it is full, and we
// drain it without blocking, so this only absorbs scheduling hiccups.
const channelBuffer = 1024

// Subscriber multiplexes every local subscription onto few connections.
type Subscriber struct {
	rdb     redis.UniversalClient
	cluster *redis.ClusterClient // nil on a single Redis
	h       Handler
	log     *slog.Logger
	m       *metrics.Metrics
	// ctx is cancelled by Close, ending rebuilds still trying.
	ctx    context.Context
	cancel context.CancelFunc

	// Lock order: group.cmdMu before mu.
	mu     sync.Mutex
	groups map[int]*group // guarded by mu; key: slot, or 0 on a single Redis
	closed bool           // guarded by mu
	wg     sync.WaitGroup // receive loops and rebuilds
}

// group is one PubSub and the channels on it.
type group struct {
	key int
	// cmdMu serialises subscribe and unsubscribe commands of this PubSub
	// with the state changes that motivate them, so Redis sees them in
	// the same order as the state.
	cmdMu sync.Mutex

	// Guarded by Subscriber.mu.
	ps         *redis.PubSub
	closed     bool
	seenAck    bool // a confirmation arrived on this PubSub before
	rebuilding bool // a rebuild is replacing ps
	chans      map[string]*chanState
}

// chanState tracks one channel. sent counts SUBSCRIBE commands we wrote,
// acked the confirmations received; a confirmation beyond sent comes from a
// resubscription after a reconnect.
type chanState struct {
	refs    int // Subscribe calls not yet undone; subscribed while > 0
	sent    uint64
	acked   uint64
	waiters []waiter
}

type waiter struct {
	target uint64
	done   chan struct{}
}

// New returns a Subscriber on rdb (a *redis.Client or *redis.ClusterClient).
func New(rdb redis.UniversalClient, h Handler, log *slog.Logger, m *metrics.Metrics) *Subscriber {
	s := &Subscriber{rdb: rdb, h: h, log: log, m: m, groups: make(map[int]*group)}
	s.cluster, _ = rdb.(*redis.ClusterClient)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// ErrClosed is returned after Close.
var ErrClosed = fmt.Errorf("subscriber closed")

// Subscribe subscribes to channel and returns once Redis confirmed it, so a
// message published after Subscribe returns is received (unless the
// connection drops, which Resubscribed reports). Subscriptions are counted:
// each successful Subscribe needs one Unsubscribe. On error nothing is held.
func (s *Subscriber) Subscribe(ctx context.Context, channel string) error {
	for {
		g, err := s.group(channel)
		if err != nil {
			return err
		}
		g.cmdMu.Lock()
		s.mu.Lock()
		if g.closed {
			s.mu.Unlock()
			g.cmdMu.Unlock()
			continue // closed by a concurrent Unsubscribe; make a new one
		}
		// The channel's state is registered before any command is written,
		// so its confirmation always finds it.
		cs := g.chans[channel]
		if cs == nil {
			cs = &chanState{}
			g.chans[channel] = cs
		}
		cs.refs++
		send := cs.refs == 1
		if send {
			cs.sent++
		}
		w := waiter{target: cs.sent, done: make(chan struct{})}
		if cs.acked >= w.target {
			close(w.done) // already subscribed and confirmed
		} else {
			cs.waiters = append(cs.waiters, w)
		}
		ps := g.ps
		s.mu.Unlock()
		switch {
		case ps == nil:
			s.open(ctx, g, channel)
		case send:
			// On error go-redis still remembers the channel and subscribes
			// it when it reconnects; the confirmation then wakes us.
			if err := s.subscribeCmd(ctx, ps, channel); err != nil {
				s.log.LogAttrs(ctx, slog.LevelDebug, "subscribe command failed, waiting for reconnect",
					slog.String("channel", channel), logging.Err(err))
			}
		}
		g.cmdMu.Unlock()
		select {
		case <-w.done:
			return nil
		case <-ctx.Done():
			s.dropWaiter(g, channel, w)
			s.Unsubscribe(context.WithoutCancel(ctx), channel)
			return fmt.Errorf("subscribe %s: %w", channel, ctx.Err())
		}
	}
}

// open creates g's PubSub subscribed to its first channel and starts
// draining it. g.cmdMu must be held.
func (s *Subscriber) open(ctx context.Context, g *group, channel string) {
	var ps *redis.PubSub
	if s.cluster != nil {
		// Created with its first channel, so go-redis connects to the node
		// that owns the channel's slot (and reconnects there).
		ps = s.cluster.SSubscribe(ctx, channel)
	} else {
		ps = s.rdb.Subscribe(ctx, channel)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = ps.Close()
		return
	}
	g.ps = ps
	s.startLoop(g, ps)
}

// Unsubscribe stops receiving channel.
func (s *Subscriber) Unsubscribe(ctx context.Context, channel string) {
	s.mu.Lock()
	g := s.groups[s.key(channel)]
	s.mu.Unlock()
	if g == nil {
		return
	}
	g.cmdMu.Lock()
	defer g.cmdMu.Unlock()
	s.mu.Lock()
	cs := g.chans[channel]
	if g.closed || cs == nil || cs.refs == 0 {
		s.mu.Unlock()
		return
	}
	cs.refs--
	if cs.refs > 0 {
		s.mu.Unlock()
		return
	}
	s.forgetIfIdle(g, channel, cs)
	empty := s.cluster != nil && wantedCount(g) == 0
	if empty {
		g.closed = true
		delete(s.groups, g.key)
	}
	ps := g.ps
	s.mu.Unlock()
	if empty {
		// The last channel of this slot: drop the connection.
		_ = ps.Close()
		return
	}
	var err error
	if s.cluster != nil {
		err = ps.SUnsubscribe(ctx, channel)
	} else {
		err = ps.Unsubscribe(ctx, channel)
	}
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "unsubscribe command failed",
			slog.String("channel", channel), logging.Err(err))
	}
}

// Close closes every PubSub and waits for the receiving goroutines.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	var pss []*redis.PubSub
	for _, g := range s.groups {
		g.closed = true
		if g.ps != nil {
			pss = append(pss, g.ps)
		}
	}
	s.groups = map[int]*group{}
	s.mu.Unlock()
	s.cancel()
	for _, ps := range pss {
		_ = ps.Close()
	}
	s.wg.Wait()
	return nil
}

func (s *Subscriber) key(channel string) int {
	if s.cluster == nil {
		return 0
	}
	return slot(channel)
}

// group returns the group of channel, creating it (without a PubSub yet:
// the first Subscribe opens it) if needed.
func (s *Subscriber) group(channel string) (*group, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	k := s.key(channel)
	g := s.groups[k]
	if g == nil {
		g = &group{key: k, chans: make(map[string]*chanState)}
		s.groups[k] = g
	}
	return g, nil
}

func (s *Subscriber) subscribeCmd(ctx context.Context, ps *redis.PubSub, channel string) error {
	if s.cluster != nil {
		return ps.SSubscribe(ctx, channel)
	}
	return ps.Subscribe(ctx, channel)
}

func (s *Subscriber) dropWaiter(g *group, channel string, w waiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := g.chans[channel]
	if cs == nil {
		return
	}
	for i, x := range cs.waiters {
		if x.done == w.done {
			cs.waiters = append(cs.waiters[:i], cs.waiters[i+1:]...)
			break
		}
	}
}

// forgetIfIdle drops the state of a channel nobody wants once no
// confirmation is outstanding. mu must be held.
func (s *Subscriber) forgetIfIdle(g *group, channel string, cs *chanState) {
	if cs.refs == 0 && cs.acked >= cs.sent && len(cs.waiters) == 0 {
		delete(g.chans, channel)
	}
}

// wantedCount counts the channels g should be subscribed to. mu must be held.
func wantedCount(g *group) int {
	n := 0
	for _, cs := range g.chans {
		if cs.refs > 0 {
			n++
		}
	}
	return n
}
