package stream_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"orderpush/pkg/rediskey"
	"orderpush/pkg/redistest"
	"orderpush/pkg/stream"
	"orderpush/pkg/stream/publish"
)

// frame is opaque to the scripts: any bytes do.
func frame(seq uint64) []byte { return strconv.AppendUint([]byte("frame "), seq, 10) }

// SetState only raises: never below what Redis holds, and a zero state only
// where there is none.
func TestSetState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.SharedClient(t)
	s := stream.New(rdb)
	m := redistest.Unique("m")
	if _, err := s.State(ctx, m); !errors.Is(err, stream.ErrNoState) {
		t.Fatalf("State of new merchant: %v", err)
	}
	if ok, err := publish.New(rdb, publish.Options{}).Publish(ctx, m, 7, 7, frame(7)); err != nil || !ok {
		t.Fatalf("publish: %v %v", ok, err)
	}
	if err := s.SetState(ctx, m, stream.State{Seq: 3, OrderSum: 1}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.State(ctx, m); st != (stream.State{Seq: 7, OrderSum: 7}) {
		t.Fatalf("SetState lowered to %+v", st)
	}
	if err := s.SetState(ctx, m, stream.State{Seq: 8, OrderSum: 5}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.State(ctx, m); st != (stream.State{Seq: 8, OrderSum: 5}) {
		t.Fatalf("SetState did not raise: %+v", st)
	}
	for _, st := range []stream.State{{}, {Seq: 3, OrderSum: 1}} {
		m := redistest.Unique("m")
		if err := s.SetState(ctx, m, st); err != nil {
			t.Fatal(err)
		}
		if got, err := s.State(ctx, m); err != nil || got != st {
			t.Fatalf("SetState(%+v) on empty: %+v %v", st, got, err)
		}
	}
}

// Nothing written on behalf of a merchant id stays forever. The state a
// gateway writes expires with the merchant's history, whose TTL it copies
// (the reading side does not know HISTORY_TTL), or, without a history,
// after NoHistoryStateTTL.
func TestStateExpires(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.SharedClient(t)
	s := stream.New(rdb)
	ttlOf := func(key string) time.Duration {
		t.Helper()
		ttl, err := rdb.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return ttl
	}
	// With a history of a 10 min TTL, shortened by hand to 5 min so that
	// the copy is told from a fresh HISTORY_TTL.
	m := redistest.Unique("m")
	if _, err := publish.New(rdb, publish.Options{HistoryTTL: 10 * time.Minute}).Publish(ctx, m, 1, 1, frame(1)); err != nil {
		t.Fatal(err)
	}
	rdb.PExpire(ctx, rediskey.History(m), 5*time.Minute)
	if err := s.SetState(ctx, m, stream.State{Seq: 2, OrderSum: 2}); err != nil {
		t.Fatal(err)
	}
	if ttl := ttlOf(rediskey.State(m)); ttl <= 4*time.Minute || ttl > 5*time.Minute {
		t.Fatalf("state ttl %v, want the history's (4m, 5m]", ttl)
	}
	// Without a history.
	for _, st := range []stream.State{{}, {Seq: 3, OrderSum: 1}} {
		m := redistest.Unique("m")
		if err := s.SetState(ctx, m, st); err != nil {
			t.Fatal(err)
		}
		if ttl := ttlOf(rediskey.State(m)); ttl <= 0 || ttl > stream.NoHistoryStateTTL {
			t.Fatalf("state ttl after SetState(%+v) %v, want (0, %v]", st, ttl, stream.NoHistoryStateTTL)
		}
	}
	// A state written before states expired gets its TTL at the next
	// SetState, even one that does not raise it.
	old := redistest.Unique("m")
	rdb.HSet(ctx, rediskey.State(old), "seq", 5, "orderSum", 1)
	if err := s.SetState(ctx, old, stream.State{Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if ttl := ttlOf(rediskey.State(old)); ttl <= 0 || ttl > stream.NoHistoryStateTTL {
		t.Fatalf("old state ttl after SetState %v, want (0, %v]", ttl, stream.NoHistoryStateTTL)
	}
	// And it does go: behind a history of a 1 s TTL the key is removed.
	m3 := redistest.Unique("m")
	if _, err := publish.New(rdb, publish.Options{HistoryTTL: time.Second}).Publish(ctx, m3, 1, 1, frame(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetState(ctx, m3, stream.State{Seq: 2}); err != nil {
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
