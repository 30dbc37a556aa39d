package subscriber

import (
	"context"
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
	"orderpush/pkg/poll"
	"orderpush/pkg/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a Handler that records what it is told.
type recorder struct {
	mu     sync.Mutex
	msgs   map[string][]string
	resubs map[string]int
}

func newRecorder() *recorder {
	return &recorder{msgs: map[string][]string{}, resubs: map[string]int{}}
}

func (r *recorder) Message(ch string, p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs[ch] = append(r.msgs[ch], string(p))
}

func (r *recorder) Resubscribed(ch string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resubs[ch]++
}

func (r *recorder) got(ch string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs[ch]...)
}

func (r *recorder) resubscribed(ch string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resubs[ch]
}

func newSub(t *testing.T, rdb redis.UniversalClient) (*Subscriber, *recorder, *metrics.Metrics) {
	rec := newRecorder()
	m := metrics.New(prometheus.NewRegistry())
	s := New(rdb, rec, slog.New(slog.NewTextHandler(io.Discard, nil)), m)
	t.Cleanup(func() { _ = s.Close() })
	return s, rec, m
}

// tctx bounds a test's Redis calls, so a hang fails the test instead of the
// whole run.
func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestConfirmedSubscribe: once Subscribe returns, a PUBLISH reaches us
// (the publisher sees one receiver); after the last Unsubscribe none does.
func TestConfirmedSubscribe(t *testing.T) {
	rdb := redistest.SharedClient(t)
	s, rec, _ := newSub(t, rdb)
	ctx := tctx(t)
	ch := "merchant:" + redistest.Unique("m")
	for i := range 2 {
		if err := s.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
		if n := rdb.Publish(ctx, ch, fmt.Sprint("m", i)).Val(); n != 1 {
			t.Fatalf("PUBLISH right after Subscribe reached %d receivers", n)
		}
	}
	s.Unsubscribe(ctx, ch) // one of two references
	if n := rdb.Publish(ctx, ch, "m2").Val(); n != 1 {
		t.Fatalf("unsubscribed while referenced: %d receivers", n)
	}
	poll.True(t, "messages", func() bool { return len(rec.got(ch)) == 3 })
	s.Unsubscribe(ctx, ch)
	poll.True(t, "unsubscribe", func() bool { return rdb.PubSubNumSub(ctx, ch).Val()[ch] == 0 })
	if err := s.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Publish(ctx, ch, "m3").Val(); n != 1 {
		t.Fatalf("resubscribe reached %d", n)
	}
	poll.True(t, "all messages", func() bool { return len(rec.got(ch)) == 4 })
}

// TestReconnectReportsResubscribed: when Redis drops the pub/sub
// connection, go-redis resubscribes and we report every channel as a
// possible gap, and count the reconnect.
func TestReconnectReportsResubscribed(t *testing.T) {
	r := redistest.Start(t)
	rdb := r.Client()
	s, rec, m := newSub(t, rdb)
	ctx := tctx(t)
	chans := []string{"merchant:a", "merchant:b", "node:x"}
	for _, ch := range chans {
		if err := s.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	poll.True(t, "resubscribed", func() bool {
		for _, ch := range chans {
			if rec.resubscribed(ch) != 1 {
				return false
			}
		}
		return true
	})
	if n := testutil.ToFloat64(m.RedisReconnects); n != 1 {
		t.Fatalf("reconnects %v", n)
	}
	// A restart (empty) is the same story, and messages flow again.
	r.Restart()
	poll.True(t, "resubscribed after restart", func() bool { return rec.resubscribed("merchant:a") == 2 })
	poll.True(t, "delivery after restart", func() bool {
		rdb.Publish(ctx, "merchant:a", "after")
		return len(rec.got("merchant:a")) > 0
	})
}

// TestSubscribeWaitsForRedis: Subscribe while Redis is down returns once
// Redis is back and the subscription confirmed, or fails with the context.
func TestSubscribeWaitsForRedis(t *testing.T) {
	r := redistest.Start(t)
	rdb := r.Client()
	s, _, _ := newSub(t, rdb)
	if err := s.Subscribe(tctx(t), "node:keep"); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := s.Subscribe(ctx, "merchant:down"); err == nil {
		t.Fatal("subscribe confirmed while Redis is down")
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- s.Subscribe(ctx, "merchant:later")
	}()
	r.Start()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := rdb.Publish(context.Background(), "merchant:later", "x").Val(); n != 1 {
		t.Fatalf("receivers %d", n)
	}
}

// TestClusterPerSlot: on Redis Cluster, channels of different slots (and
// nodes) each get their sharded subscription, so SPUBLISH reaches us for
// all of them; the last channel of a slot closes its connection.
func TestClusterPerSlot(t *testing.T) {
	c := redistest.StartCluster(t)
	cc := c.Client(t)
	s, rec, _ := newSub(t, cc)
	ctx := tctx(t)
	// Our slot function agrees with CLUSTER KEYSLOT.
	for _, k := range []string{"merchant:m1", "{merchant:m1}:history", "node:gw-1", "a{}b", "{}{x}", "x{y}z{w}", "", "{"} {
		want, err := cc.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := slot(k); int64(got) != want {
			t.Fatalf("slot(%q) = %d, redis says %d", k, got, want)
		}
	}
	var chans []string
	slots := map[int]bool{}
	for i := 0; len(chans) < 12; i++ {
		ch := fmt.Sprintf("merchant:m%d", i)
		chans = append(chans, ch)
		slots[slot(ch)] = true
		if err := s.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	for _, ch := range chans {
		if n := cc.SPublish(ctx, ch, "hi "+ch).Val(); n != 1 {
			t.Fatalf("SPUBLISH %s reached %d receivers", ch, n)
		}
	}
	poll.True(t, "sharded messages", func() bool {
		for _, ch := range chans {
			if len(rec.got(ch)) != 1 {
				return false
			}
		}
		return true
	})
	s.mu.Lock()
	groups := len(s.groups)
	s.mu.Unlock()
	if groups != len(slots) {
		t.Fatalf("%d pubsubs for %d slots", groups, len(slots))
	}
	for _, ch := range chans {
		s.Unsubscribe(ctx, ch)
	}
	s.mu.Lock()
	groups = len(s.groups)
	s.mu.Unlock()
	if groups != 0 {
		t.Fatalf("%d pubsubs left", groups)
	}
}
