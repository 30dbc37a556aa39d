package backfill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"orderpush/gateway/internal/metrics"
	"orderpush/pkg/redistest"
	"orderpush/pkg/stream"
	"orderpush/pkg/stream/publish"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logAPI is an order API whose event log holds seqs 1..n (failure
// injection: fail makes every call fail).
type logAPI struct {
	mu    sync.Mutex
	n     uint64
	sum   int64
	holes map[uint64]bool
	fail  error
	calls int
	sums  int // Summary calls
}

func (a *logAPI) Summary(ctx context.Context, m string) (stream.State, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sums++
	if a.fail != nil {
		return stream.State{}, a.fail
	}
	return stream.State{Seq: a.n, OrderSum: a.sum}, nil
}

func (a *logAPI) Events(ctx context.Context, m string, after uint64, limit int) ([]stream.Event, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if a.fail != nil {
		return nil, a.fail
	}
	var out []stream.Event
	for s := after + 1; s <= a.n && len(out) < limit; s++ {
		if !a.holes[s] {
			out = append(out, stream.Event{Seq: s, Frame: frame(s)})
		}
	}
	return out, nil
}

func frame(seq uint64) []byte {
	return fmt.Appendf(nil, `{"event":"order","seq":%d,"data":{"orderSum":1}}`, seq)
}

// streams is both sides of the merchant streams: what the order API
// publishes and what the Source reads.
type streams struct {
	*stream.Store
	*publish.Publisher
}

func setup(t *testing.T, api API) (*Source, streams, string) {
	rdb := redistest.SharedClient(t)
	st := streams{stream.New(rdb), publish.New(rdb, publish.Options{})}
	return New(st.Store, api, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.New(prometheus.NewRegistry())), st, redistest.Unique("m")
}

func seqs(r Range) []uint64 {
	var out []uint64
	for _, e := range r.Events {
		out = append(out, e.Seq)
	}
	return out
}

func TestRangeMixesHistoryAndLog(t *testing.T) {
	api := &logAPI{n: 2500}
	src, st, mid := setup(t, api)
	ctx := context.Background()
	for s := uint64(1); s <= 2500; s++ {
		if s > 10 && s < 2400 { // Redis lost these (trimmed), then holds the tail
			continue
		}
		if s >= 5 && s <= 6 {
			continue
		}
		if _, err := st.Publish(ctx, mid, s, 1, frame(s)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := src.Range(ctx, mid, 2, 2450)
	if err != nil {
		t.Fatal(err)
	}
	got := seqs(r)
	if len(got) != 2448 || got[0] != 3 || got[len(got)-1] != 2450 {
		t.Fatalf("got %d events %v..%v", len(got), got[:3], got[len(got)-1])
	}
	for i, s := range got {
		if s != uint64(3+i) {
			t.Fatalf("event %d is %d", i, s)
		}
	}
	// 3,4,7..10 and 2400..2450 from history; 5,6 and 11..2399 from the log.
	if r.FromHistory != 6+51 || r.FromLog != 2+2389 {
		t.Fatalf("history %d, log %d", r.FromHistory, r.FromLog)
	}
}

func TestRangeStopsAtAHoleNobodyHas(t *testing.T) {
	api := &logAPI{n: 10, holes: map[uint64]bool{6: true}}
	src, st, mid := setup(t, api)
	ctx := context.Background()
	for s := uint64(1); s <= 10; s++ {
		if s != 6 {
			_, _ = st.Publish(ctx, mid, s, 1, frame(s))
		}
	}
	r, err := src.Range(ctx, mid, 0, 10)
	if err != nil || r.Last(0) != 5 {
		t.Fatalf("range %v %v", seqs(r), err)
	}
	// Without an order API only Redis is asked.
	bare := New(st.Store, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.New(prometheus.NewRegistry()))
	if r, err := bare.Range(ctx, mid, 0, 10); err != nil || r.Last(0) != 5 {
		t.Fatalf("bare range %v %v", seqs(r), err)
	}
}

func TestRangeReportsAFailingSource(t *testing.T) {
	boom := errors.New("boom")
	api := &logAPI{n: 10, fail: boom}
	src, _, mid := setup(t, api)
	if _, err := src.Range(context.Background(), mid, 0, 10); !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
}

func TestStateFallsBackToTheAPIAndWritesBack(t *testing.T) {
	api := &logAPI{n: 7, sum: 3}
	src, st, mid := setup(t, api)
	ctx := context.Background()
	got, err := src.State(ctx, mid)
	if err != nil || got != (stream.State{Seq: 7, OrderSum: 3}) {
		t.Fatalf("state %+v %v", got, err)
	}
	if back, err := st.State(ctx, mid); err != nil || back.Seq != 7 {
		t.Fatalf("not written back: %+v %v", back, err)
	}
	bare := New(st.Store, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.New(prometheus.NewRegistry()))
	if got, err := bare.State(ctx, redistest.Unique("m")); err != nil || got != (stream.State{}) {
		t.Fatalf("unknown merchant without api: %+v %v", got, err)
	}
}

// TestNewer: a joining socket's state comes from Redis when it is newer
// than the topic's; the order API is asked only when the client claims
// more than both, and its answer is written back to Redis.
func TestNewer(t *testing.T) {
	api := &logAPI{n: 9, sum: 4}
	src, st, mid := setup(t, api)
	ctx := context.Background()
	if err := st.SetState(ctx, mid, stream.State{Seq: 5, OrderSum: 2}); err != nil {
		t.Fatal(err)
	}
	summaries := func() int {
		api.mu.Lock()
		defer api.mu.Unlock()
		return api.sums
	}
	if got, ok := src.Newer(ctx, mid, 3, -1, true); !ok || got != (stream.State{Seq: 5, OrderSum: 2}) {
		t.Fatalf("Redis newer than the topic: %+v %v", got, ok)
	}
	if got, ok := src.Newer(ctx, mid, 3, 5, true); !ok || got.Seq != 5 || summaries() != 0 {
		t.Fatalf("claim within Redis: %+v %v, %d order API calls", got, ok, summaries())
	}
	if got, ok := src.Newer(ctx, mid, 5, 4, false); ok {
		t.Fatalf("nothing newer, Redis not read: %+v", got)
	}
	if got, ok := src.Newer(ctx, mid, 5, 8, true); !ok || got != (stream.State{Seq: 9, OrderSum: 4}) || summaries() != 1 {
		t.Fatalf("claim beyond Redis: %+v %v, %d order API calls", got, ok, summaries())
	}
	if back, err := st.State(ctx, mid); err != nil || back.Seq != 9 {
		t.Fatalf("order API state not written back: %+v %v", back, err)
	}
	bare := New(st.Store, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.New(prometheus.NewRegistry()))
	if got, ok := bare.Newer(ctx, redistest.Unique("m"), 0, 8, true); ok {
		t.Fatalf("no order API, nothing in Redis: %+v", got)
	}
	api.mu.Lock()
	api.fail = errors.New("order api down")
	api.mu.Unlock()
	if got, ok := src.Newer(ctx, redistest.Unique("m"), 0, 8, false); ok {
		t.Fatalf("failing order API: %+v", got)
	}
}
