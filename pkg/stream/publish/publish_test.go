package publish_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"orderpush/pkg/rediskey"
	"orderpush/pkg/redistest"
	"orderpush/pkg/stream"
	"orderpush/pkg/stream/publish"
	"orderpush/pkg/wire"
)

func frame(seq uint64) []byte {
	return wire.MustEncode(wire.EventOrder, seq, 0, wire.OrderData{OrderSum: int64(seq)})
}

func TestPublishHistoryState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.SharedClient(t)
	p, r := publish.New(rdb, publish.Options{HistorySize: 5, HistoryTTL: time.Minute}), stream.New(rdb)
	m := redistest.Unique("m")

	sub := rdb.Subscribe(ctx, rediskey.Channel(m))
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 7; seq++ {
		ok, err := p.Publish(ctx, m, seq, int64(seq), frame(seq))
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
	evs, err := r.History(ctx, m, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 5 || evs[0].Seq != 3 || evs[4].Seq != 7 || string(evs[0].Frame) != string(frame(3)) {
		t.Fatalf("history %v", seqs(evs))
	}
	evs, _ = r.History(ctx, m, 4, 6)
	if fmt.Sprint(seqs(evs)) != "[5 6]" {
		t.Fatalf("History(4,6] = %v", seqs(evs))
	}
	if ttl := rdb.PTTL(ctx, rediskey.History(m)).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("history ttl %v", ttl)
	}
	st, err := r.State(ctx, m)
	if err != nil || st != (stream.State{Seq: 7, OrderSum: 7}) {
		t.Fatalf("state %+v %v", st, err)
	}

	// Re-publishing a seq in history does nothing; an older seq (a racing
	// publisher) never lowers the state.
	if ok, err := p.Publish(ctx, m, 6, 99, frame(6)); err != nil || ok {
		t.Fatalf("re-publish: %v %v", ok, err)
	}
	if ok, _ := p.Publish(ctx, m, 2, 2, frame(2)); !ok {
		t.Fatal("trimmed seq not republished")
	}
	if st, _ := r.State(ctx, m); st.Seq != 7 || st.OrderSum != 7 {
		t.Fatalf("state lowered to %+v", st)
	}
}

func TestPublishRacing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.SharedClient(t)
	p, r := publish.New(rdb, publish.Options{}), stream.New(rdb)
	m := redistest.Unique("m")
	// Two publishers push every seq, in opposite orders: each seq is
	// published exactly once and the state ends at the newest.
	var published sync.Map
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= 50; i++ {
				seq := i
				if w == 1 {
					seq = 51 - i
				}
				ok, err := p.Publish(ctx, m, seq, int64(seq), frame(seq))
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					if _, dup := published.LoadOrStore(seq, w); dup {
						t.Errorf("seq %d published twice", seq)
					}
				}
			}
		}()
	}
	wg.Wait()
	evs, _ := r.History(ctx, m, 0, 0)
	if len(evs) != 50 {
		t.Fatalf("history has %d events", len(evs))
	}
	if st, _ := r.State(ctx, m); st.Seq != 50 {
		t.Fatalf("state %+v", st)
	}
}

// The state key expires like the history, and each publish refreshes both.
func TestPublishStateExpires(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.SharedClient(t)
	p := publish.New(rdb, publish.Options{HistoryTTL: time.Minute})
	m := redistest.Unique("m")
	if ok, err := p.Publish(ctx, m, 1, 1, frame(1)); err != nil || !ok {
		t.Fatalf("publish: %v %v", ok, err)
	}
	if ttl := rdb.PTTL(ctx, rediskey.State(m)).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("state ttl after publish %v, want (0, 1m]", ttl)
	}
	// Shorten it by hand, publish, and it is back.
	rdb.PExpire(ctx, rediskey.State(m), time.Second)
	if _, err := p.Publish(ctx, m, 2, 2, frame(2)); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, rediskey.State(m)).Val(); ttl <= 30*time.Second {
		t.Fatalf("state ttl not refreshed by a publish: %v", ttl)
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
	p := publish.New(redistest.SharedClient(b), publish.Options{})
	m := redistest.Unique("bench")
	f := frame(1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Publish(ctx, m, uint64(i+1), 1, f); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/publish")
}
