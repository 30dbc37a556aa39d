package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"orderpush/gateway/internal/wstest"
	"orderpush/pkg/config"
	"orderpush/pkg/poll"
	"orderpush/pkg/redistest"
	"orderpush/pkg/stream/publish"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// net/http keep-alive connections of the default transport linger
		// between tests by design.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

var testSecret = []byte("gateway-test-secret-0123456789abcdef")

// testLogger writes to the test log only when GATEWAY_TEST_LOG is set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("GATEWAY_TEST_LOG") == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// gw is one in-process gateway replica on a free loopback port.
type gw struct {
	t    testing.TB
	srv  *Server
	reg  *prometheus.Registry
	URL  string // http://127.0.0.1:port
	Node string

	cancel context.CancelFunc
	done   chan error

	mu     sync.Mutex
	netcs  map[net.Conn]struct{}
	killed bool
	once   sync.Once
}

// gwOpt adjusts a replica's config.
type gwOpt func(*Config)

// startGW starts a replica on redisURL; it is drained when the test ends.
func startGW(t testing.TB, redisURL string, opts ...gwOpt) *gw {
	t.Helper()
	rc, err := config.ParseRedisURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Addr:          "127.0.0.1:0",
		NodeID:        strings.ReplaceAll(redistest.Unique("gw"), "-", ""),
		Redis:         rc,
		JWT:           token.Config{Secret: testSecret},
		SendQueueSize: 256,
		GapWait:       100 * time.Millisecond,
		ReplayMax:     10000,
		DrainSpread:   200 * time.Millisecond,
		PingInterval:  25 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	reg := prometheus.NewRegistry()
	srv, err := New(cfg, testLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	g := &gw{t: t, srv: srv, reg: reg, Node: cfg.NodeID, done: make(chan error, 1), netcs: map[net.Conn]struct{}{}}
	srv.connState = g.connState
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.URL = "http://" + l.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() { g.done <- srv.Serve(ctx, l) }()
	waitReady(t, g.URL)
	t.Cleanup(g.Stop)
	return g
}

func (g *gw) connState(c net.Conn, st http.ConnState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch st {
	case http.StateNew:
		g.netcs[c] = struct{}{}
	case http.StateClosed:
		delete(g.netcs, c)
	}
}

// Stop drains the replica (SIGTERM) and waits for it.
func (g *gw) Stop() {
	g.mu.Lock()
	killed := g.killed
	g.mu.Unlock()
	if killed {
		return
	}
	g.once.Do(func() {
		g.cancel()
		if err := <-g.done; err != nil {
			g.t.Errorf("gateway %s stopped with %v", g.Node, err)
		}
	})
}

// Kill stops the replica abruptly, as SIGKILL would: no presence cleanup,
// no close frames. Redis operations are cut first, so nothing it does while
// dying reaches Redis.
func (g *gw) Kill() {
	g.mu.Lock()
	g.killed = true
	conns := make([]net.Conn, 0, len(g.netcs))
	for c := range g.netcs {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	s := g.srv
	s.stop()           // sockets' work ends
	s.presence.Close() // beats and re-registration end
	_ = s.rdb.Close()
	_ = s.http.Close() // listener and non-hijacked connections
	for _, c := range conns {
		_ = c.Close() // hijacked sockets: TCP closed without a close frame
	}
	s.hub.Close()
	_ = s.subs.Close()
	s.handlers.Wait()
	s.bg.Wait()
	g.once.Do(func() {
		g.cancel()
		<-g.done
	})
}

// metric reads a counter or gauge of the replica.
func (g *gw) metric(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

func waitReady(t testing.TB, base string) {
	t.Helper()
	poll.Within(t, 10*time.Second, "readyz", func() error {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
}

func mint(t testing.TB, role, sub string, ttl time.Duration) string {
	t.Helper()
	s, err := token.Mint(testSecret, role, sub, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func merchantToken(t testing.TB, mid string) string {
	return mint(t, token.RoleMerchant, mid, time.Hour)
}

// dial opens a merchant socket.
func dial(t testing.TB, base, mid string, since int64, extra ...string) *wstest.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := wstest.Dial(ctx, wstest.URL(base, merchantToken(t, mid), since, extra...), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", base, err)
	}
	t.Cleanup(c.Close)
	return c
}

// newRedis is a client for the test's own reads and writes.
func newRedis(t testing.TB, url string) *redis.Client {
	t.Helper()
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// publisher plays the order API for one merchant: it builds each frame once
// with wire.Encode and publishes it through pkg/stream/publish, as the order API's
// outbox does.
type publisher struct {
	t     testing.TB
	store *publish.Publisher
	mid   string

	mu  sync.Mutex
	seq uint64
	sum int64
}

func newPublisher(t testing.TB, rdb redis.UniversalClient, mid string) *publisher {
	return &publisher{t: t, store: publish.New(rdb, publish.Options{}), mid: mid}
}

// frame builds the next order event without publishing it.
func (p *publisher) next() (uint64, int64, []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	p.sum++
	return p.seq, p.sum, orderFrame(p.mid, p.seq, p.sum)
}

func orderFrame(mid string, seq uint64, sum int64) []byte {
	now := time.Now()
	o := wire.Order{
		OrderNo: fmt.Sprintf("u1%013d%04d", now.UnixMilli(), seq%10000), MerchantID: mid, UserID: "u1",
		Date: "2022-06-22", Price: 3650, Status: wire.StatusPending, CreatedAt: now,
	}
	return wire.MustEncode(wire.EventOrder, seq, now.UnixMilli(), wire.OrderData{OrderSum: sum, Msg: wire.NewOrderMsg, Order: o})
}

// publish places n orders.
func (p *publisher) publish(n int) {
	p.t.Helper()
	for range n {
		seq, sum, f := p.next()
		if _, err := p.store.Publish(context.Background(), p.mid, seq, sum, f); err != nil {
			p.t.Fatalf("publish seq %d: %v", seq, err)
		}
	}
}

var errNotYet = errors.New("not yet")

func redisZ(seq uint64, frame []byte) redis.Z {
	return redis.Z{Score: float64(seq), Member: frame}
}
