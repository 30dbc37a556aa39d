package publish_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"

	"orderpush/pkg/rediskey"
	"orderpush/pkg/redistest"
	"orderpush/pkg/stream"
	"orderpush/pkg/stream/publish"
)

// batch is seqs from..to of each merchant, interleaved.
func batch(from, to uint64, merchants ...string) []publish.Event {
	var evs []publish.Event
	for seq := from; seq <= to; seq++ {
		for _, m := range merchants {
			evs = append(evs, publish.Event{MerchantID: m, Seq: seq, OrderSum: int64(seq), Frame: frame(seq)})
		}
	}
	return evs
}

// receive reads n payloads from sub.
func receive(t *testing.T, sub *redis.PubSub, n int) []string {
	t.Helper()
	var got []string
	for range n {
		msg, err := sub.ReceiveMessage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, msg.Payload)
	}
	return got
}

// subscribe subscribes to each merchant's channel on its own connection
// (a sharded subscription names channels of one slot only) and waits for
// Redis to confirm.
func subscribe(t *testing.T, merchants []string, sub func(channel string) *redis.PubSub) map[string]*redis.PubSub {
	t.Helper()
	subs := map[string]*redis.PubSub{}
	for _, m := range merchants {
		ps := sub(rediskey.Channel(m))
		t.Cleanup(func() { ps.Close() })
		if _, err := ps.Receive(t.Context()); err != nil {
			t.Fatal(err)
		}
		subs[m] = ps
	}
	return subs
}

func noErrors(t *testing.T, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
}

// checkBatch publishes a batch and checks what each merchant's channel,
// history and state got; then the same batch again publishes nothing.
func checkBatch(t *testing.T, p *publish.Publisher, r *stream.Store, subs map[string]*redis.PubSub) {
	t.Helper()
	ctx := t.Context()
	merchants := slices.Sorted(maps.Keys(subs))
	noErrors(t, p.PublishBatch(ctx, batch(1, 3, merchants...)))
	for _, m := range merchants {
		want := fmt.Sprint([]string{string(frame(1)), string(frame(2)), string(frame(3))})
		if got := receive(t, subs[m], 3); fmt.Sprint(got) != want {
			t.Fatalf("%s received %v", m, got)
		}
		if st, err := r.State(ctx, m); err != nil || st != (stream.State{Seq: 3, OrderSum: 3}) {
			t.Fatalf("%s state %+v %v", m, st, err)
		}
		if evs, err := r.History(ctx, m, 0, 0); err != nil || fmt.Sprint(seqs(evs)) != "[1 2 3]" {
			t.Fatalf("%s history %v %v", m, seqs(evs), err)
		}
	}
	// Already in history: no error, nothing published. Seq 4 after it
	// proves nothing else was queued on the channels.
	noErrors(t, p.PublishBatch(ctx, batch(2, 4, merchants...)))
	for _, m := range merchants {
		if got := receive(t, subs[m], 1); got[0] != string(frame(4)) {
			t.Fatalf("%s received %s after re-publishing 2..3", m, got[0])
		}
	}
}

func TestPublishBatch(t *testing.T) {
	t.Parallel()
	rdb := redistest.SharedClient(t)
	p, r := publish.New(rdb, publish.Options{}), stream.New(rdb)
	merchants := []string{redistest.Unique("m"), redistest.Unique("m")}
	checkBatch(t, p, r, subscribe(t, merchants, func(ch string) *redis.PubSub { return rdb.Subscribe(t.Context(), ch) }))
}

// A Redis that lost its script cache (restarted, failed over) still takes
// a batch: the refused EVALSHAs go again as EVAL.
func TestPublishBatchAfterScriptFlush(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	rdb := rs.Client()
	defer rdb.Close()
	p, r := publish.New(rdb, publish.Options{}), stream.New(rdb)
	m := redistest.Unique("m")
	noErrors(t, p.PublishBatch(t.Context(), batch(1, 1, m)))
	if err := rdb.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	noErrors(t, p.PublishBatch(t.Context(), batch(2, 3, m)))
	if evs, err := r.History(t.Context(), m, 0, 0); err != nil || fmt.Sprint(seqs(evs)) != "[1 2 3]" {
		t.Fatalf("history %v %v", seqs(evs), err)
	}
}

// A failing Redis fails every event of the batch, each with its own error.
func TestPublishBatchRedisDown(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	rdb := rs.Client()
	defer rdb.Close()
	p := publish.New(rdb, publish.Options{})
	rs.Stop()
	errs := p.PublishBatch(t.Context(), batch(1, 2, "m1", "m2"))
	if len(errs) != 4 {
		t.Fatalf("%d errors for 4 events", len(errs))
	}
	for i, err := range errs {
		if err == nil {
			t.Fatalf("event %d published with Redis down", i)
		}
	}
}

// Two publishers (the order API's PostgreSQL committers) may send one
// merchant's events out of order: the later batch's older seq is still
// published and kept in history in seq order, and the state never goes
// back.
func TestPublishBatchOutOfOrder(t *testing.T) {
	t.Parallel()
	rdb := redistest.SharedClient(t)
	p, r := publish.New(rdb, publish.Options{}), stream.New(rdb)
	m := redistest.Unique("m")
	subs := subscribe(t, []string{m}, func(ch string) *redis.PubSub { return rdb.Subscribe(t.Context(), ch) })
	noErrors(t, p.PublishBatch(t.Context(), batch(2, 3, m)))
	noErrors(t, p.PublishBatch(t.Context(), batch(1, 1, m)))
	if got := receive(t, subs[m], 3); fmt.Sprint(got) != fmt.Sprint([]string{string(frame(2)), string(frame(3)), string(frame(1))}) {
		t.Fatalf("received %v", got)
	}
	if evs, err := r.History(t.Context(), m, 0, 0); err != nil || fmt.Sprint(seqs(evs)) != "[1 2 3]" {
		t.Fatalf("history %v %v", seqs(evs), err)
	}
	if st, err := r.State(t.Context(), m); err != nil || st != (stream.State{Seq: 3, OrderSum: 3}) {
		t.Fatalf("state %+v %v", st, err)
	}
}
