package session

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/session/sendq"
	"orderpush/pkg/config"
	"orderpush/pkg/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newTest(cfg Config) (*Session, *metrics.Metrics) {
	m := metrics.New(prometheus.NewRegistry())
	return New(Identity{ID: "c1", Merchant: "m1", Bearer: "tok", Transport: metrics.TransportSSE}, cfg,
		Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: m}), m
}

// writer is a push transport that records what the drainer wrote.
type writer struct {
	mu     sync.Mutex
	frames []string
	closed Reason
	wrote  chan struct{}
}

func (w *writer) CloseNow() {}

func (w *writer) WriteFrames(b []sendq.Entry) (int, error) {
	w.mu.Lock()
	for _, e := range b {
		w.frames = append(w.frames, string(e.Data))
	}
	w.mu.Unlock()
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return len(b), nil
}

func (w *writer) WriteClose(r Reason, _ string) error {
	w.mu.Lock()
	w.closed = r
	w.mu.Unlock()
	return nil
}

// TestPushModeOverflowAndExpiry: frames reach the writer in order; a full
// queue ends the session with TryAgainLater (counted once); the token's exp
// ends another with Policy.
func TestPushModeOverflowAndExpiry(t *testing.T) {
	s, m := newTest(Config{QueueSize: 2})
	w := &writer{wrote: make(chan struct{}, 1)}
	s.Start(context.Background(), w, nil)
	s.TrySend(sendq.Entry{Data: []byte("a")})
	select {
	case <-w.wrote:
	case <-time.After(5 * time.Second):
		t.Fatal("nothing written")
	}
	s.Overflow()
	s.Overflow()
	s.End()
	if w.closed != TryAgainLater || testutil.ToFloat64(m.SlowConsumerCloses) != 1 {
		t.Fatalf("closed %v, counted %v", w.closed, testutil.ToFloat64(m.SlowConsumerCloses))
	}

	s2, _ := newTest(Config{})
	s2.expiry = time.Now().Add(50 * time.Millisecond)
	w2 := &writer{wrote: make(chan struct{}, 1)}
	s2.Start(context.Background(), w2, nil)
	deadline := time.Now().Add(5 * time.Second)
	for r, _ := s2.Closing(); r == None && time.Now().Before(deadline); r, _ = s2.Closing() {
		time.Sleep(5 * time.Millisecond) // polling, bounded by the deadline
	}
	s2.End()
	if w2.closed != Policy {
		t.Fatalf("expiry closed with %v", w2.closed)
	}
}

// TestAnswer: Answer returns what Handle would queue, queues nothing, and
// answers a message CLIENT_MSG_RATE drops with rate_limited.
func TestAnswer(t *testing.T) {
	s, _ := newTest(Config{QueueSize: 8, MsgRate: config.Rate{N: 1, Per: time.Hour}}) // burst 2
	if got := string(s.Answer([]byte(`{"event":"ping"}`))); got != `{"event":"pong"}` {
		t.Fatalf("ping: %s", got)
	}
	if got := s.Answer([]byte(`nonsense`)); !strings.Contains(string(got), wire.CodeInvalidFrame) {
		t.Fatalf("malformed: %s", got)
	}
	for range 2 { // over the burst: refused with a notice, then silently; both answered
		if got := s.Answer([]byte(`{"event":"ping"}`)); !strings.Contains(string(got), wire.CodeRateLimited) {
			t.Fatalf("over the limit: %s", got)
		}
	}
	if n := s.q.Len(); n != 0 {
		t.Fatalf("Answer queued %d frames", n)
	}
	s.End()
}
