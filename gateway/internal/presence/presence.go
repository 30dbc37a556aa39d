package presence

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/session/sendq"
	"orderpush/pkg/logging"
	redispresence "orderpush/pkg/presence"
	"orderpush/pkg/rediskey"
)

// Conn is a local connection as presence sees it.
type Conn interface {
	ID() string
	Merchant() string
	// TrySend queues a frame without blocking; false means the
	// connection's queue is full.
	TrySend(e sendq.Entry) bool
	// Overflow is called once TrySend failed: the connection cannot keep
	// up and is to be closed with 1013. It must not block.
	Overflow()
}

// Subscriber subscribes the replica's node channel (package subscriber).
type Subscriber interface {
	Subscribe(ctx context.Context, channel string) error
}

// Config tunes a Presence. Zero durations mean the package defaults of
// orderpush/pkg/presence.
type Config struct {
	Node         string        // NODE_ID: whose entries and node channel
	BeatInterval time.Duration // heartbeat, default 3 s
	TTL          time.Duration // liveness key lifetime, default 10 s
}

// Deps are what a Presence writes to and reports to.
type Deps struct {
	Redis      redis.UniversalClient
	Subscriber Subscriber
	Log        *slog.Logger
	Metrics    *metrics.Metrics
}

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("presence closed")

// removeTimeout bounds one presence removal; it runs detached from the
// connection's context, which has ended by then.
const removeTimeout = 2 * time.Second

// Presence is this replica's connection registry and its Redis presence.
// C is the connection type the server keeps (the drain gets them back).
type Presence[C Conn] struct {
	cfg      Config
	reg      *redispresence.Registry
	adds     *addBatcher
	subs     Subscriber
	log      *slog.Logger
	m        *metrics.Metrics
	nodeChan string

	ctx       context.Context // ends at Close; bounds background work
	cancel    context.CancelFunc
	wg        sync.WaitGroup // Run and the re-registrations
	ready     chan struct{}  // closed after Run's first beat, or by Close
	readyOnce sync.Once
	reregs    atomic.Bool // a re-registration runs

	mu       sync.Mutex
	conns    map[string]C      // guarded by mu: open connections by id
	removals map[string]string // guarded by mu: failed removals, conn -> merchant
	closed   bool              // guarded by mu
}

// New returns a Presence for cfg.Node.
func New[C Conn](cfg Config, d Deps) *Presence[C] {
	if cfg.BeatInterval <= 0 {
		cfg.BeatInterval = redispresence.DefaultBeatInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Presence[C]{
		cfg:      cfg,
		reg:      redispresence.New(d.Redis, cfg.TTL),
		adds:     &addBatcher{rdb: d.Redis, node: cfg.Node},
		subs:     d.Subscriber,
		log:      d.Log,
		m:        d.Metrics,
		nodeChan: rediskey.NodeChannel(cfg.Node),
		ctx:      ctx,
		cancel:   cancel,
		ready:    make(chan struct{}),
		conns:    make(map[string]C),
		removals: make(map[string]string),
	}
}

// Run beats once, reports Ready, subscribes the node channel (retrying
// while Redis is unreachable) and beats every BeatInterval until ctx ends or
// Close is called. A failed beat is retried after half a second rather than
// a full interval. Run is called once.
func (p *Presence[C]) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.wg.Add(1)
	p.mu.Unlock()
	defer p.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.ctx, cancel)()

	ok := p.beat(ctx)
	p.readyOnce.Do(func() { close(p.ready) })
	var sub sync.WaitGroup
	sub.Go(func() { p.subscribeNode(ctx) })
	defer sub.Wait()

	t := time.NewTimer(p.nextBeat(ok))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			t.Reset(p.nextBeat(p.beat(ctx)))
		case <-ctx.Done():
			return nil
		}
	}
}

// Ready is closed once Run made its first beat (whether or not Redis
// answered), or at Close.
func (p *Presence[C]) Ready() <-chan struct{} { return p.ready }

// Close stops Run and any re-registration and waits for them. It leaves
// the entries and the liveness key in Redis (Leave removes the latter). It
// is idempotent.
func (p *Presence[C]) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.readyOnce.Do(func() { close(p.ready) })
	p.wg.Wait()
}

// Leave removes the replica's liveness key, so its connections stop
// counting at once (the drain).
func (p *Presence[C]) Leave(ctx context.Context) error {
	return p.reg.Leave(ctx, p.cfg.Node)
}

// Add writes c's entry to Redis (batched with concurrent connects), so
// other replicas and the order API count it. A failure (Redis down) is
// counted and repaired by the re-registration once Redis is back. c is not
// yet reachable by notices: see Open.
func (p *Presence[C]) Add(ctx context.Context, c C) {
	if err := p.adds.add(ctx, c.ID(), c.Merchant()); err != nil {
		p.m.PresenceErrors.Inc()
		p.log.LogAttrs(ctx, slog.LevelWarn, "presence add failed", slog.String(logging.KeyConn, c.ID()), logging.Err(err))
	}
}

// Open makes c reachable by notices, lists it in Conns and re-registers it
// after Redis comes back. Call it once c's first frame (hello) is queued,
// so no notice overtakes it.
func (p *Presence[C]) Open(c C) {
	p.mu.Lock()
	p.conns[c.ID()] = c
	p.mu.Unlock()
}

// Remove forgets c here and in Redis; a failed Redis removal is retried by
// the next beats, so a closed connection never keeps counting.
func (p *Presence[C]) Remove(c C) {
	id, mid := c.ID(), c.Merchant()
	p.mu.Lock()
	delete(p.conns, id)
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
	defer cancel()
	if err := p.reg.Remove(ctx, id, mid); err != nil {
		p.m.PresenceErrors.Inc()
		p.mu.Lock()
		p.removals[id] = mid
		p.mu.Unlock()
	}
}

// Conns returns the open connections (those Opened and not Removed).
func (p *Presence[C]) Conns() []C {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]C, 0, len(p.conns))
	for _, c := range p.conns {
		out = append(out, c)
	}
	return out
}

// Len is the number of open connections on this replica.
func (p *Presence[C]) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Online counts merchantID's connections on every live replica, this one
// included (one Redis round trip plus one per replica named).
func (p *Presence[C]) Online(ctx context.Context, merchantID string) (int, error) {
	return p.reg.Online(ctx, merchantID)
}

// Reserve takes a place for connection connID of merchantID on this
// replica when the merchant has fewer than limit connections on live
// replicas, counting and writing in one atomic step (MAX_CONNS_PER_MERCHANT,
// PROTOCOL.md "Limits and hostile clients"); it reports whether it did and
// the count it saw. Add completes the entry.
func (p *Presence[C]) Reserve(ctx context.Context, connID, merchantID string, limit int) (ok bool, count int, err error) {
	return p.reg.Reserve(ctx, connID, merchantID, p.cfg.Node, limit)
}

// subscribeNode subscribes this replica's notice channel, retrying while
// Redis is unreachable.
func (p *Presence[C]) subscribeNode(ctx context.Context) {
	for ctx.Err() == nil {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := p.subs.Subscribe(sctx, p.nodeChan)
		cancel()
		if err == nil {
			return
		}
		p.log.LogAttrs(ctx, slog.LevelWarn, "node channel subscribe failed, retrying", logging.Err(err))
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
}

func (p *Presence[C]) nextBeat(ok bool) time.Duration {
	if ok {
		return p.cfg.BeatInterval
	}
	return min(p.cfg.BeatInterval, 500*time.Millisecond)
}

// beat renews the liveness key and retries failed removals; it reports
// success.
func (p *Presence[C]) beat(ctx context.Context) bool {
	bctx, cancel := context.WithTimeout(ctx, p.cfg.BeatInterval)
	defer cancel()
	wasAlive, err := p.reg.Renew(bctx, p.cfg.Node)
	if err != nil {
		p.m.PresenceErrors.Inc()
		p.log.LogAttrs(bctx, slog.LevelWarn, "presence beat failed", logging.Err(err))
		return false
	}
	if !wasAlive {
		// The liveness key had lapsed (Redis restarted empty, or beats were
		// late): readers may have dropped our entries as dead. Each add has
		// its own deadline: many connections may take longer than a beat.
		p.readdAll(ctx)
	}
	p.mu.Lock()
	retry := make(map[string]string, len(p.removals))
	for c, m := range p.removals {
		retry[c] = m
	}
	p.mu.Unlock()
	for conn, mid := range retry {
		if err := p.reg.Remove(bctx, conn, mid); err != nil {
			break
		}
		p.mu.Lock()
		delete(p.removals, conn)
		p.mu.Unlock()
	}
	return true
}

// readdAll writes every open connection into presence again.
func (p *Presence[C]) readdAll(ctx context.Context) {
	for _, c := range p.Conns() {
		if ctx.Err() != nil {
			return
		}
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		p.Add(actx, c)
		cancel()
	}
}

// reregister beats at once after the node channel was resubscribed, i.e.
// after a Redis reconnect; if Redis came back empty the beat finds the
// liveness key gone and writes every open connection again.
func (p *Presence[C]) reregister() {
	if !p.reregs.CompareAndSwap(false, true) {
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.reregs.Store(false)
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		defer p.reregs.Store(false)
		p.beat(p.ctx)
	}()
}
