package stream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"orderpush/pkg/rediskey"
	"orderpush/pkg/redistest"
	"orderpush/pkg/stream"
	"orderpush/pkg/wire"
)

func newStore(t *testing.T, opt stream.Options) (*stream.Store, *redis.Client) {
	t.Helper()
	o, err := redis.ParseURL(redistest.SharedURL(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(o)
	t.Cleanup(func() { _ = rdb.Close() })
	return stream.New(rdb, opt), rdb
}

func frame(seq uint64) []byte {
	return wire.MustEncode(wire.EventOrder, seq, 0, wire.OrderData{OrderSum: int64(seq)})
}

func TestPublishHistoryState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rdb := newStore(t, stream.Options{HistorySize: 5, HistoryTTL: time.Minute})
	m := redistest.Unique("m")

	if _, err := s.State(ctx, m); !errors.Is(err, stream.ErrNoState) {
		t.Fatalf("State of new merchant: %v", err)
	}
	sub := rdb.Subscribe(ctx, rediskey.Channel(m))
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 7; seq++ {
		ok, err := s.Publish(ctx, m, seq, int64(seq), frame(seq))
		if err != nil || !ok {
			t.Fatalf("publish %d: %v %v", seq, ok, err)
		}
	}
	for seq := uint64(1); seq <= 7; seq++ {
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Payload != string(frame(seq)) {
			t.Fatalf("message %d = %s", seq, msg.Payload)
		}
	}
	// Bounded to 5: seqs 3..7 remain.
	evs, err := s.History(ctx, m, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 5 || evs[0].Seq != 3 || evs[4].Seq != 7 || string(evs[0].Frame) != string(frame(3)) {
		t.Fatalf("history %v", seqs(evs))
	}
	evs, _ = s.History(ctx, m, 4, 6)
	if fmt.Sprint(seqs(evs)) != "[5 6]" {
		t.Fatalf("History(4,6] = %v", seqs(evs))
	}
	if ttl := rdb.PTTL(ctx, rediskey.History(m)).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("history ttl %v", ttl)
	}
	st, err := s.State(ctx, m)
	if err != nil || st != (stream.State{Seq: 7, OrderSum: 7}) {
		t.Fatalf("state %+v %v", st, err)
	}

	// Re-publishing a seq in history does nothing; an older seq (a racing
	// publisher) never lowers the state.
	if ok, err := s.Publish(ctx, m, 6, 99, frame(6)); err != nil || ok {
		t.Fatalf("re-publish: %v %v", ok, err)
	}
	if ok, _ := s.Publish(ctx, m, 2, 2, frame(2)); !ok {
		t.Fatal("trimmed seq not republished")
	}
	if st, _ := s.State(ctx, m); st.Seq != 7 || st.OrderSum != 7 {
		t.Fatalf("state lowered to %+v", st)
	}
	if err := s.SetState(ctx, m, stream.State{Seq: 3, OrderSum: 1}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.State(ctx, m); st.Seq != 7 {
		t.Fatalf("SetState lowered to %+v", st)
	}
	m0 := redistest.Unique("m")
	if err := s.SetState(ctx, m0, stream.State{}); err != nil {
		t.Fatal(err)
	}
	if st, err := s.State(ctx, m0); err != nil || st != (stream.State{}) {
		t.Fatalf("zero SetState on empty: %+v %v", st, err)
	}
	m2 := redistest.Unique("m")
	if err := s.SetState(ctx, m2, stream.State{Seq: 3, OrderSum: 1}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.State(ctx, m2); st != (stream.State{Seq: 3, OrderSum: 1}) {
		t.Fatalf("SetState on empty: %+v", st)
	}
}

func TestPublishRacing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t, stream.Options{})
	m := redistest.Unique("m")
	// Two publishers push every seq, in opposite orders: each seq is
	// published exactly once and the state ends at the newest.
	var published sync.Map
	var wg sync.WaitGroup
	for p := 0; p < 2; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= 50; i++ {
				seq := i
				if p == 1 {
					seq = 51 - i
				}
				ok, err := s.Publish(ctx, m, seq, int64(seq), frame(seq))
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					if _, dup := published.LoadOrStore(seq, p); dup {
						t.Errorf("seq %d published twice", seq)
					}
				}
			}
		}()
	}
	wg.Wait()
	evs, _ := s.History(ctx, m, 0, 0)
	if len(evs) != 50 {
		t.Fatalf("history has %d events", len(evs))
	}
	if st, _ := s.State(ctx, m); st.Seq != 50 {
		t.Fatalf("state %+v", st)
	}
}

func seqs(evs []stream.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

func BenchmarkPublish(b *testing.B) {
	ctx := context.Background()
	o, _ := redis.ParseURL(redistest.SharedURL(b))
	rdb := redis.NewClient(o)
	defer rdb.Close()
	s := stream.New(rdb, stream.Options{})
	m := redistest.Unique("bench")
	f := frame(1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Publish(ctx, m, uint64(i+1), 1, f); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/publish")
}

// Nothing written on behalf of a merchant id stays forever: the state key
// expires like the history, whether the publish script or SetState (the
// gateway's fallback, also for ids that never get an event) wrote it.
func TestStateExpires(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rdb := newStore(t, stream.Options{HistoryTTL: time.Minute})
	ttlOf := func(key string) time.Duration {
		t.Helper()
		ttl, err := rdb.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return ttl
	}
	m := redistest.Unique("m")
	if ok, err := s.Publish(ctx, m, 1, 1, frame(1)); err != nil || !ok {
		t.Fatalf("publish: %v %v", ok, err)
	}
	if ttl := ttlOf(rediskey.State(m)); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("state ttl after publish %v, want (0, 1m]", ttl)
	}
	// A publish refreshes it: shorten it by hand, publish, and it is back.
	rdb.PExpire(ctx, rediskey.State(m), time.Second)
	if _, err := s.Publish(ctx, m, 2, 2, frame(2)); err != nil {
		t.Fatal(err)
	}
	if ttl := ttlOf(rediskey.State(m)); ttl <= 30*time.Second {
		t.Fatalf("state ttl not refreshed by a publish: %v", ttl)
	}
	for _, st := range []stream.State{{}, {Seq: 3, OrderSum: 1}} {
		m := redistest.Unique("m")
		if err := s.SetState(ctx, m, st); err != nil {
			t.Fatal(err)
		}
		if ttl := ttlOf(rediskey.State(m)); ttl <= 0 || ttl > time.Minute {
			t.Fatalf("state ttl after SetState(%+v) %v, want (0, 1m]", st, ttl)
		}
	}
	// A state written before states expired gets its TTL at the next
	// SetState, even one that does not raise it.
	old := redistest.Unique("m")
	rdb.HSet(ctx, rediskey.State(old), "seq", 5, "orderSum", 1)
	if err := s.SetState(ctx, old, stream.State{Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if ttl := ttlOf(rediskey.State(old)); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("old state ttl after SetState %v, want (0, 1m]", ttl)
	}
	// And it does go: a short TTL really removes the key.
	short, _ := newStore(t, stream.Options{HistoryTTL: time.Second})
	m3 := redistest.Unique("m")
	if err := short.SetState(ctx, m3, stream.State{Seq: 1}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for rdb.Exists(ctx, rediskey.State(m3)).Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatal("state key still there 5 s after a 1 s TTL")
		}
		time.Sleep(50 * time.Millisecond) // poll interval, bounded by the deadline
	}
}
