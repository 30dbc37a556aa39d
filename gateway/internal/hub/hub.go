// Package hub is the gateway's local fan-out: merchant -> the sockets of
// this replica, and per merchant the sequencer that delivers the stream
// strictly by seq (ARCHITECTURE.md "How an order travels" 4-6).
//
// A merchant's topic exists while at least one local socket wants it; the
// first socket subscribes the merchant's channel and the last one leaving
// unsubscribes it. Frames from Redis go through the topic's sequencer: a
// frame with the next seq is delivered to every socket at once, an early one
// waits briefly for the missing ones, which are then fetched from Redis
// history or the order API's event log (package backfill); only a gap neither
// holds becomes resync. Frames without seq are passed through as they come.
//
// Each socket has its own cursor (the last seq it was sent), so a socket
// that joined with a replay gets every seq exactly once across the seam.
//
// Lock order: Hub.mu, then topic.mu. Neither is held during I/O. A Hub is
// safe for concurrent use.
package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"orderpush/gateway/internal/backfill"
	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/session/sendq"
	"orderpush/pkg/logging"
	"orderpush/pkg/rediskey"
	"orderpush/pkg/stream"
	"orderpush/pkg/wire"
)

// Member is a local socket as the hub sees it.
type Member interface {
	ID() string
	// TrySend queues a frame without blocking; false means the socket's
	// queue is full.
	TrySend(e sendq.Entry) bool
	// Send queues a frame, waiting for room; used for the socket's own
	// replay, never for fan-out.
	Send(ctx context.Context, e sendq.Entry) error
	// Overflow is called once TrySend failed: the socket cannot keep up and
	// is to be closed with 1013. It must not block.
	Overflow()
}

// Subscriber is the Redis side: confirmed subscribe, and unsubscribe.
type Subscriber interface {
	Subscribe(ctx context.Context, channel string) error
	Unsubscribe(ctx context.Context, channel string)
}

// Source finds state and missed events (package backfill, which decides
// where each comes from: Redis, then the order API).
type Source interface {
	// State is the merchant's current state, for a new topic and for fills.
	State(ctx context.Context, merchantID string) (stream.State, error)
	// Newer is a state newer than have for a joining socket with since, if
	// any source knows one; readRedis false skips Redis (just read).
	Newer(ctx context.Context, merchantID string, have uint64, since int64, readRedis bool) (stream.State, bool)
	// Range is the run of events after < seq <= upto that can be found.
	Range(ctx context.Context, merchantID string, after, upto uint64) (backfill.Range, error)
}

// Defaults of Config.
const (
	DefaultGapWait   = 100 * time.Millisecond
	DefaultReplayMax = 10000
	DefaultBuffer    = 256
	// initTimeout bounds subscribing and reading state for a new topic.
	initTimeout = 10 * time.Second
	// maxPending bounds early frames held per merchant: past it the hub
	// stops waiting and fills at once.
	maxPending = 4096
	// maxFills bounds fills doing I/O at the same time.
	maxFills = 32
	// fillAttempts is how often a fill is tried when a source fails (not
	// when an event is simply absent) before the gap becomes resync.
	fillAttempts = 3
)

// Config tunes a Hub. Zero values mean the defaults.
type Config struct {
	Node      string        // NODE_ID, shown in hello and resync
	GapWait   time.Duration // how long an early event waits for the missing ones
	ReplayMax uint64        // longest replay a reconnect gets before resync
	Buffer    int           // live frames buffered per socket during its replay
}

// ErrClosed is returned by Join after Close.
var ErrClosed = errors.New("hub closed")

// Hub is the merchant -> local sockets registry and sequencer.
type Hub struct {
	cfg  Config
	subs Subscriber
	src  Source
	log  *slog.Logger
	m    *metrics.Metrics

	ctx     context.Context // cancelled by Close; bounds fills
	cancel  context.CancelFunc
	fillSem chan struct{}  // one token per fill doing I/O
	wg      sync.WaitGroup // init, fill and timer goroutines

	mu     sync.RWMutex
	topics map[string]*topic // guarded by mu
	closed bool              // guarded by mu
}

// New returns a Hub.
func New(cfg Config, subs Subscriber, src Source, log *slog.Logger, m *metrics.Metrics) *Hub {
	if cfg.GapWait <= 0 {
		cfg.GapWait = DefaultGapWait
	}
	if cfg.ReplayMax == 0 {
		cfg.ReplayMax = DefaultReplayMax
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultBuffer
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{cfg: cfg, subs: subs, src: src, log: log, m: m, ctx: ctx, cancel: cancel,
		fillSem: make(chan struct{}, maxFills), topics: make(map[string]*topic)}
}

// Close stops fills and timers and waits for them. Sockets are closed by
// their owner.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	topics := make([]*topic, 0, len(h.topics))
	for _, t := range h.topics {
		topics = append(topics, t)
	}
	h.mu.Unlock()
	h.cancel()
	for _, t := range topics {
		t.mu.Lock()
		h.stopTimer(t)
		t.mu.Unlock()
	}
	h.wg.Wait()
}

// Message takes one frame published on a merchant channel. It never blocks
// on I/O (it runs on the Redis receive goroutine).
func (h *Hub) Message(channel string, payload []byte) {
	mid, ok := strings.CutPrefix(channel, "merchant:")
	if !ok {
		return
	}
	f, err := parseFrame(payload)
	if err != nil {
		h.m.BadFrames.Inc()
		h.log.LogAttrs(h.ctx, slog.LevelWarn, "dropped a bad frame", slog.String(logging.KeyMerchant, mid), logging.Err(err))
		return
	}
	t := h.topic(mid)
	if t == nil {
		return
	}
	t.mu.Lock()
	if !t.closed {
		h.offer(t, f)
	}
	t.mu.Unlock()
}

// Resubscribed back-fills a merchant whose channel was resubscribed after a
// Redis reconnect: whatever was published meanwhile was missed.
func (h *Hub) Resubscribed(channel string) {
	mid, ok := strings.CutPrefix(channel, "merchant:")
	if !ok {
		return
	}
	t := h.topic(mid)
	if t == nil {
		return
	}
	h.startFill(t)
}

// topic returns the merchant's topic, or nil when no local socket wants it.
func (h *Hub) topic(mid string) *topic {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.topics[mid]
}

// Topics is the number of merchants with local sockets.
func (h *Hub) Topics() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.topics)
}

// acquire returns the merchant's topic, ready (subscribed, state read),
// creating it if needed; fresh reports that this call created it.
func (h *Hub) acquire(ctx context.Context, mid string) (t *topic, fresh bool, err error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, false, ErrClosed
	}
	t = h.topics[mid]
	if t == nil {
		t = newTopic(mid)
		h.topics[mid] = t
		fresh = true
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.initTopic(t)
		}()
	}
	t.refs++
	h.mu.Unlock()
	select {
	case <-t.ready:
	case <-ctx.Done():
		h.release(t)
		return nil, false, fmt.Errorf("join %s: %w", mid, ctx.Err())
	}
	if t.initErr != nil {
		h.release(t)
		return nil, false, t.initErr
	}
	return t, fresh, nil
}

// initTopic subscribes and then reads the state (in that order, so no event
// falls between), detached from any one socket's context.
func (h *Hub) initTopic(t *topic) {
	ctx, cancel := context.WithTimeout(h.ctx, initTimeout)
	defer cancel()
	err := h.subs.Subscribe(ctx, t.channel)
	subscribed := err == nil
	var st stream.State
	if err == nil {
		st, err = h.src.State(ctx, t.merchant)
	}
	if err == nil {
		h.m.Subscriptions.Inc()
		t.mu.Lock()
		t.inited = true
		t.head, t.orderSum = st.Seq, st.OrderSum
		h.afterJump(t)
		t.mu.Unlock()
	} else {
		t.initErr = fmt.Errorf("join %s: %w", t.merchant, err)
	}
	h.mu.Lock()
	if err != nil {
		t.removed = true
		if h.topics[t.merchant] == t {
			delete(h.topics, t.merchant)
		}
	}
	removed := t.removed
	t.readyFlag = true
	h.mu.Unlock()
	close(t.ready)
	switch {
	case err == nil && removed:
		h.teardown(t) // everyone left while we were starting
	case err != nil && subscribed:
		h.subs.Unsubscribe(context.WithoutCancel(ctx), t.channel)
	}
}

// release drops one reference; the last one tears the topic down.
func (h *Hub) release(t *topic) {
	h.mu.Lock()
	t.refs--
	if t.refs > 0 || t.removed {
		h.mu.Unlock()
		return
	}
	t.removed = true
	if h.topics[t.merchant] == t {
		delete(h.topics, t.merchant)
	}
	ready := t.readyFlag && t.initErr == nil
	h.mu.Unlock()
	if ready {
		h.teardown(t)
	}
}

func (h *Hub) teardown(t *topic) {
	t.mu.Lock()
	t.closed = true
	h.stopTimer(t)
	t.pending = nil
	t.mu.Unlock()
	h.m.Subscriptions.Dec()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h.subs.Unsubscribe(ctx, t.channel)
}

// helloEntry builds a hello or resync frame for one socket, with its head;
// its Seq is the state's.
func (h *Hub) helloEntry(event string, t *topic, m Member, st stream.State) sendq.Entry {
	e := sendq.Build(event, wire.HelloData{
		ConnID: m.ID(), MerchantID: t.merchant, Node: h.cfg.Node, Seq: st.Seq, OrderSum: st.OrderSum,
	})
	e.Seq = st.Seq
	return e
}

func newTopic(mid string) *topic {
	return &topic{
		merchant: mid,
		channel:  rediskey.Channel(mid),
		ready:    make(chan struct{}),
		pending:  make(map[uint64]frame),
	}
}
