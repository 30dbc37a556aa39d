package session

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/session/sendq"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newTest(cfg Config) (*Session, *metrics.Metrics) {
	m := metrics.New(prometheus.NewRegistry())
	return New(Identity{ID: "c1", Merchant: "m1", Bearer: "tok", Transport: metrics.TransportSSE}, cfg,
		Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: m}), m
}

// puller is a pull transport as a long-poll would drive it: notify wakes
// its poll loop, which takes what is queued.
type puller struct {
	wake   chan struct{}
	mu     sync.Mutex
	got    []string
	killed bool
}

func (p *puller) CloseNow() {
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
}

func (p *puller) notify() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// poll takes everything queued, the way a long-poll GET would.
func (p *puller) poll(s *Session) {
	var batch []sendq.Entry
	for {
		var more bool
		batch, more = s.Take(batch)
		if !more {
			return
		}
		p.mu.Lock()
		for _, e := range batch {
			p.got = append(p.got, string(e.Data))
		}
		p.mu.Unlock()
		s.Sent(batch)
	}
}

// TestPullMode: a pull transport is notified when frames wait after its
// poll found the queue empty, and when the session closes; End finishes
// the session.
func TestPullMode(t *testing.T) {
	s, m := newTest(Config{QueueSize: 8})
	if !s.TrySend(sendq.Entry{Data: []byte(`{"event":"hello"}`)}) {
		t.Fatal("hello refused")
	}
	p := &puller{wake: make(chan struct{}, 1)}
	s.StartPull(context.Background(), p, p.notify, nil)
	p.poll(s) // the first poll takes what admission queued
	s.TrySend(sendq.Entry{Data: []byte(`{"event":"order","seq":1}`)})
	select {
	case <-p.wake:
	case <-time.After(5 * time.Second):
		t.Fatal("no notify for a frame pushed to an idle queue")
	}
	p.poll(s)
	if r, _ := s.Closing(); r != None {
		t.Fatalf("closing %v", r)
	}
	s.Close(TryAgainLater, "x")
	select {
	case <-p.wake:
	case <-time.After(5 * time.Second):
		t.Fatal("no notify for Close")
	}
	if r, _ := s.Closing(); r != TryAgainLater {
		t.Fatalf("reason %v", r)
	}
	s.End()
	<-s.Done()
	if len(p.got) != 2 || p.got[1] != `{"event":"order","seq":1}` {
		t.Fatalf("got %q", p.got)
	}
	if testutil.ToFloat64(m.FramesSent) != 2 {
		t.Fatal("sent frames not counted")
	}
	if s.TrySend(sendq.Entry{Data: []byte("{}")}) {
		t.Fatal("queue open after End")
	}
	s.DeadPeer()
	if !p.killed {
		t.Fatal("DeadPeer did not drop the connection")
	}
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
