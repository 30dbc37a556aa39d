package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"orderpush/gateway/internal/backfill"
	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/session/sendq"
	"orderpush/pkg/stream"
	"orderpush/pkg/wire"
)

// The fakes below stand in for Redis and the order API so the sequencer's
// decisions can be driven one frame at a time; the server package tests the
// same paths against real Redis.

type fakeSubs struct {
	mu    sync.Mutex
	count map[string]int
	log   []string
	hook  func(channel string) // runs inside Subscribe, before it returns
}

func (f *fakeSubs) Subscribe(ctx context.Context, ch string) error {
	f.mu.Lock()
	f.count[ch]++
	f.log = append(f.log, "sub "+ch)
	hook := f.hook
	f.mu.Unlock()
	if hook != nil {
		hook(ch)
	}
	return nil
}

func (f *fakeSubs) Unsubscribe(ctx context.Context, ch string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count[ch]--
	f.log = append(f.log, "unsub "+ch)
}

func (f *fakeSubs) subscribed(ch string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count[ch]
}

// fakeSource holds a merchant's state, "Redis history" and "event log".
type fakeSource struct {
	mu     sync.Mutex
	state  stream.State
	hist   map[uint64][]byte
	log    map[uint64][]byte // nil: no order API
	gate   chan struct{}     // when set, Range waits for it to close
	ranges int
}

func newSource() *fakeSource { return &fakeSource{hist: map[uint64][]byte{}} }

// publish puts the events from..to (orderSum = seq) in the history and
// moves the state to st, as the order API's publishes would.
func (f *fakeSource) publish(from, to uint64, st stream.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for seq := from; seq <= to; seq++ {
		f.hist[seq] = fr(seq, int64(seq))
	}
	f.state = st
}

func (f *fakeSource) setState(st stream.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = st
}

func (f *fakeSource) State(context.Context, string) (stream.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state, nil
}

// Newer answers as backfill.Source does with one store for Redis and the
// order API: the state, when it is newer than have or the client claims
// more (an order API to ask exists when log is set).
func (f *fakeSource) Newer(_ context.Context, _ string, have uint64, since int64, readRedis bool) (stream.State, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if readRedis || (since >= 0 && uint64(since) > have && f.log != nil) {
		return f.state, true
	}
	return stream.State{}, false
}

func (f *fakeSource) Range(ctx context.Context, m string, after, upto uint64) (backfill.Range, error) {
	f.mu.Lock()
	gate := f.gate
	f.ranges++
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return backfill.Range{}, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var r backfill.Range
	for seq := after + 1; seq <= upto; seq++ {
		if b, ok := f.hist[seq]; ok {
			r.Events = append(r.Events, stream.Event{Seq: seq, Frame: b})
			r.FromHistory++
		} else if b, ok := f.log[seq]; ok {
			r.Events = append(r.Events, stream.Event{Seq: seq, Frame: b})
			r.FromLog++
		} else {
			break
		}
	}
	return r, nil
}

func (f *fakeSource) rangeCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ranges
}

// member records what the hub queues for it.
type member struct {
	id    string
	limit int

	mu        sync.Mutex
	got       [][]byte
	overflows int
	notify    chan struct{}
}

func newMember(id string, limit int) *member {
	return &member{id: id, limit: limit, notify: make(chan struct{}, 1)}
}

func (m *member) ID() string { return m.id }

func (m *member) TrySend(e sendq.Entry) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.got) >= m.limit {
		return false
	}
	m.got = append(m.got, e.Data)
	select {
	case m.notify <- struct{}{}:
	default:
	}
	return true
}

func (m *member) Send(ctx context.Context, e sendq.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.got = append(m.got, e.Data)
	select {
	case m.notify <- struct{}{}:
	default:
	}
	return nil
}

func (m *member) Overflow() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.overflows++
}

type seen struct {
	Event string `json:"event"`
	Seq   uint64 `json:"seq"`
	Data  struct {
		Seq      uint64 `json:"seq"`
		OrderSum int64  `json:"orderSum"`
	} `json:"data"`
}

// summary renders what a member got, e.g. "hello:3 4 5 resync:9 x".
func (m *member) summary() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return render(m.got)
}

func render(frames [][]byte) string {
	out := ""
	for i, b := range frames {
		var s seen
		_ = json.Unmarshal(b, &s)
		if i > 0 {
			out += " "
		}
		switch {
		case s.Event == wire.EventHello || s.Event == wire.EventResync:
			out += fmt.Sprintf("%s:%d/%d", s.Event, s.Data.Seq, s.Data.OrderSum)
		case s.Seq > 0:
			out += fmt.Sprint(s.Seq)
		default:
			out += s.Event
		}
	}
	return out
}

// waitFor waits until the member's summary equals want.
func (m *member) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		if got := m.summary(); got == want {
			return
		}
		select {
		case <-m.notify:
		case <-deadline.C:
			t.Fatalf("member %s got %q, want %q", m.id, m.summary(), want)
		}
	}
}

func fr(seq uint64, sum int64) []byte {
	return wire.MustEncode(wire.EventOrder, seq, time.Now().UnixMilli(), wire.OrderData{OrderSum: sum, Msg: "m"})
}

func newTestHub(t testing.TB, src *fakeSource) (*Hub, *fakeSubs) {
	subs := &fakeSubs{count: map[string]int{}}
	h := New(Config{Node: "n1", GapWait: 30 * time.Millisecond}, subs, src,
		slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.New(prometheus.NewRegistry()))
	t.Cleanup(h.Close)
	return h, subs
}
