package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/session/sendq"
	"orderpush/gateway/internal/subscriber"
	"orderpush/pkg/poll"
	redispresence "orderpush/pkg/presence"
	"orderpush/pkg/rediskey"
	"orderpush/pkg/redistest"
	"orderpush/pkg/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// conn is a local connection that records what it was sent.
type conn struct {
	id, mid string

	mu         sync.Mutex
	got        [][]byte
	full       bool
	overflowed bool
}

func (c *conn) ID() string       { return c.id }
func (c *conn) Merchant() string { return c.mid }

func (c *conn) TrySend(e sendq.Entry) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.full {
		return false
	}
	c.got = append(c.got, e.Data)
	return true
}

func (c *conn) Overflow() {
	c.mu.Lock()
	c.overflowed = true
	c.mu.Unlock()
}

func (c *conn) frames() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.got...)
}

// hubStub is the router's next handler: it counts what is not presence's.
type hubStub struct {
	mu       sync.Mutex
	messages int
	resubs   int
}

func (h *hubStub) Message(string, []byte) { h.mu.Lock(); h.messages++; h.mu.Unlock() }
func (h *hubStub) Resubscribed(string)    { h.mu.Lock(); h.resubs++; h.mu.Unlock() }

type replica struct {
	p    *Presence[*conn]
	m    *metrics.Metrics
	hub  *hubStub
	rt   *Router
	subs *subscriber.Subscriber
	done chan error
}

// start wires a Presence as the server does: the subscriber delivers to a
// Router, filled once presence and the (stub) hub exist; Run on its own
// goroutine.
func start(t *testing.T, rdb redis.UniversalClient, node string, beat time.Duration) *replica {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := &replica{m: metrics.New(prometheus.NewRegistry()), hub: &hubStub{}, rt: new(Router), done: make(chan error, 1)}
	r.subs = subscriber.New(rdb, r.rt, log, r.m)
	r.p = New[*conn](Config{Node: node, BeatInterval: beat, TTL: 10 * beat},
		Deps{Redis: rdb, Subscriber: r.subs, Log: log, Metrics: r.m})
	*r.rt = NewRouter(r.p, r.hub)
	go func() { r.done <- r.p.Run(context.Background()) }()
	t.Cleanup(func() {
		r.p.Close()
		<-r.done
		_ = r.subs.Close()
	})
	select {
	case <-r.p.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("presence never ready")
	}
	return r
}

func online(t *testing.T, reg *redispresence.Registry, mid string, want int) func() error {
	return func() error {
		n, err := reg.Online(context.Background(), mid)
		if err != nil || n != want {
			return fmt.Errorf("online %d %v, want %d", n, err, want)
		}
		return nil
	}
}

// TestLifecycle: a connection counts in Redis after Add, gets the notices
// addressed to it once Open, stops counting after Remove; Leave drops the
// replica's connections at once; Close stops Run.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	rdb := redistest.SharedClient(t)
	reg := redispresence.New(rdb, 0)
	node := redistest.Unique("node")
	r := start(t, rdb, node, 100*time.Millisecond)
	mid := redistest.Unique("m")
	ctx := context.Background()

	a, b := &conn{id: redistest.Unique("c"), mid: mid}, &conn{id: redistest.Unique("c"), mid: mid}
	r.p.Add(ctx, a)
	r.p.Add(ctx, b)
	poll.Until(t, "two online", online(t, reg, mid, 2))
	if n, err := r.p.Online(ctx, mid); err != nil || n != 2 {
		t.Fatalf("Presence.Online %d %v", n, err)
	}
	if ok, n, err := r.p.Reserve(ctx, redistest.Unique("c"), mid, 2); err != nil || ok || n != 2 {
		t.Fatalf("Reserve at the cap: %v %d %v, want refused at 2", ok, n, err)
	}

	// A notice reaches an opened connection only, and only that one.
	frame := wire.MustEncode(wire.EventNotice, 0, 1, wire.NoticeData{Msg: "hi"})
	notice := func(id string) {
		env, _ := json.Marshal(wire.Notice{ConnID: id, Frame: frame})
		poll.Until(t, "node channel subscribed", func() error {
			if n, err := rdb.Publish(ctx, rediskey.NodeChannel(node), env).Result(); err != nil || n != 1 {
				return fmt.Errorf("published to %d %v", n, err)
			}
			return nil
		})
	}
	notice(a.id)
	poll.Until(t, "unknown_conn counted", func() error {
		if v := testutil.ToFloat64(r.m.Notices.WithLabelValues("unknown_conn")); v != 1 {
			return fmt.Errorf("unknown_conn %v", v)
		}
		return nil
	})
	r.p.Open(a)
	r.p.Open(b)
	if r.p.Len() != 2 || len(r.p.Conns()) != 2 {
		t.Fatalf("Len %d, Conns %d, want 2", r.p.Len(), len(r.p.Conns()))
	}
	notice(a.id)
	poll.Until(t, "notice delivered", func() error {
		if got := a.frames(); len(got) != 1 || string(got[0]) != string(frame) {
			return fmt.Errorf("a got %q", got)
		}
		return nil
	})
	if got := b.frames(); len(got) != 0 {
		t.Fatalf("b got %q", got)
	}
	b.mu.Lock()
	b.full = true
	b.mu.Unlock()
	notice(b.id)
	poll.Until(t, "full connection overflowed", func() error {
		b.mu.Lock()
		defer b.mu.Unlock()
		if !b.overflowed {
			return errors.New("not overflowed")
		}
		return nil
	})
	r.rt.Message(rediskey.NodeChannel(node), []byte(`{"connId":"x","frame":"nope"}`))
	if v := testutil.ToFloat64(r.m.Notices.WithLabelValues("bad")); v != 1 {
		t.Fatalf("bad notices %v", v)
	}
	// Everything else is the hub's.
	r.rt.Message(rediskey.Channel(mid), []byte(`{}`))
	r.rt.Resubscribed(rediskey.Channel(mid))
	r.hub.mu.Lock()
	if r.hub.messages != 1 || r.hub.resubs != 1 {
		t.Fatalf("hub got %d messages, %d resubscriptions", r.hub.messages, r.hub.resubs)
	}
	r.hub.mu.Unlock()

	r.p.Remove(b)
	poll.Until(t, "one online after Remove", online(t, reg, mid, 1))
	if r.p.Len() != 1 {
		t.Fatalf("Len %d after Remove", r.p.Len())
	}
	if err := r.p.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := reg.Online(ctx, mid); n != 0 {
		t.Fatalf("online %d after Leave", n)
	}
	r.p.Close()
	r.p.Close() // idempotent
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Fatalf("Run ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end at Close")
	}
	if err := r.p.Run(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v", err)
	}
}

// TestReregistration: when Redis lost the replica (liveness key and
// entries gone, as after a restart with no persistence), the
// resubscription of the node channel makes the replica write every open
// connection again.
func TestReregistration(t *testing.T) {
	t.Parallel()
	rdb := redistest.SharedClient(t)
	reg := redispresence.New(rdb, 0)
	node := redistest.Unique("node")
	// Beats far apart: only the resubscription can bring them back.
	r := start(t, rdb, node, time.Hour)
	mid := redistest.Unique("m")
	ctx := context.Background()
	var conns []*conn
	for range 3 {
		c := &conn{id: redistest.Unique("c"), mid: mid}
		r.p.Add(ctx, c)
		r.p.Open(c)
		conns = append(conns, c)
	}
	poll.Until(t, "three online", online(t, reg, mid, 3))
	// What an empty Redis looks like to readers.
	keys := []string{rediskey.NodeAlive(node), rediskey.Conns(mid)}
	for _, c := range conns {
		keys = append(keys, rediskey.Conn(c.id))
	}
	if err := rdb.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	if n, _ := reg.Online(ctx, mid); n != 0 {
		t.Fatalf("online %d after the loss", n)
	}
	r.rt.Resubscribed(rediskey.NodeChannel(node))
	poll.Until(t, "three online again", online(t, reg, mid, 3))
	for _, c := range conns {
		if loc, ok, err := reg.Locate(ctx, c.id); err != nil || !ok || loc.Node != node {
			t.Fatalf("locate %s: %+v %v %v", c.id, loc, ok, err)
		}
	}
	r.hub.mu.Lock()
	defer r.hub.mu.Unlock()
	if r.hub.resubs != 0 {
		t.Fatal("the node channel's resubscription reached the hub")
	}
}
