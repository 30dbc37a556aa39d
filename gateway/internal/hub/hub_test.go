package hub

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"orderpush/pkg/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ch = "merchant:m1"

func join(t *testing.T, h *Hub, m *member, since int64) *Subscription {
	t.Helper()
	s, err := h.Join(context.Background(), "m1", m, since)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Leave)
	return s
}

func TestInOrderDuplicatesAndPassThrough(t *testing.T) {
	src := newSource()
	src.state = stream.State{Seq: 2, OrderSum: 2}
	h, _ := newTestHub(t, src)
	a, b := newMember("a", 100), newMember("b", 100)
	join(t, h, a, NoSince)
	join(t, h, b, NoSince)
	h.Message(ch, fr(2, 2)) // already in hello
	h.Message(ch, fr(3, 3))
	h.Message(ch, fr(3, 3))
	h.Message(ch, []byte(`{"event":"banner","data":{"msg":"hi"}}`))
	h.Message(ch, []byte(`not json`))
	h.Message(ch, fr(4, 2))
	h.Message("merchant:other", fr(5, 5))
	for _, m := range []*member{a, b} {
		m.waitFor(t, "hello:2/2 3 banner 4")
	}
}

func TestEarlyFrameWaitsForTheMissingOne(t *testing.T) {
	src := newSource()
	h, _ := newTestHub(t, src)
	a := newMember("a", 100)
	join(t, h, a, NoSince)
	h.Message(ch, fr(1, 1))
	h.Message(ch, fr(3, 3))
	h.Message(ch, fr(4, 4))
	h.Message(ch, fr(2, 2))
	a.waitFor(t, "hello:0/0 1 2 3 4")
	if n := src.rangeCalls(); n != 0 {
		t.Fatalf("%d fills for a gap that closed by itself", n)
	}
}

func TestGapFilledFromSource(t *testing.T) {
	src := newSource()
	src.hist[2] = fr(2, 2)
	src.log = map[uint64][]byte{3: fr(3, 3)}
	h, _ := newTestHub(t, src)
	a := newMember("a", 100)
	join(t, h, a, NoSince)
	h.Message(ch, fr(1, 1))
	h.Message(ch, fr(4, 4))
	a.waitFor(t, "hello:0/0 1 2 3 4")
	// The fill counts after it delivered: the frames may arrive first.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := testCount(h.m.GapsFilled.WithLabelValues("history")) + testCount(h.m.GapsFilled.WithLabelValues("eventlog"))
		if got == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gap fills counted %v", got)
		}
		time.Sleep(5 * time.Millisecond) // poll interval inside the deadline
	}
}

func TestUnfillableGapResyncs(t *testing.T) {
	src := newSource()
	h, _ := newTestHub(t, src)
	a, b := newMember("a", 100), newMember("b", 100)
	join(t, h, a, NoSince)
	join(t, h, b, NoSince)
	h.Message(ch, fr(1, 1))
	src.setState(stream.State{Seq: 5, OrderSum: 3})
	h.Message(ch, fr(4, 2))
	h.Message(ch, fr(5, 3))
	a.waitFor(t, "hello:0/0 1 resync:5/3")
	h.Message(ch, fr(6, 4))
	a.waitFor(t, "hello:0/0 1 resync:5/3 6")
	b.waitFor(t, "hello:0/0 1 resync:5/3 6")
}

// TestReplaySeam: live frames that arrive while a socket replays are
// buffered and sent after the replay, each seq once.
func TestReplaySeam(t *testing.T) {
	src := newSource()
	src.publish(1, 10, stream.State{Seq: 10, OrderSum: 10})
	h, _ := newTestHub(t, src)
	live := newMember("live", 100)
	join(t, h, live, NoSince)
	src.mu.Lock()
	src.gate = make(chan struct{})
	src.mu.Unlock()
	r := newMember("replayer", 100)
	s := join(t, h, r, 5)
	done := make(chan error, 1)
	go func() { done <- s.Replay(context.Background()) }()
	h.Message(ch, fr(10, 10)) // a duplicate the replay also covers
	h.Message(ch, fr(11, 11))
	h.Message(ch, fr(12, 12))
	live.waitFor(t, "hello:10/10 11 12")
	r.waitFor(t, "hello:10/10")
	close(src.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.Message(ch, fr(13, 13))
	r.waitFor(t, "hello:10/10 6 7 8 9 10 11 12 13")
	live.waitFor(t, "hello:10/10 11 12 13")
}

func TestReplayGapResyncs(t *testing.T) {
	src := newSource()
	src.publish(8, 10, stream.State{Seq: 10, OrderSum: 7})
	h, _ := newTestHub(t, src)
	r := newMember("r", 100)
	s := join(t, h, r, 2) // 3..7 are gone
	if err := s.Replay(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.Message(ch, fr(11, 8))
	r.waitFor(t, "hello:10/7 resync:10/7 11")
}

func TestSinceAheadResyncs(t *testing.T) {
	src := newSource()
	src.state = stream.State{Seq: 4, OrderSum: 1}
	h, _ := newTestHub(t, src)
	r := newMember("r", 100)
	s := join(t, h, r, 9)
	if err := s.Replay(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "hello:4/1 resync:4/1")
}

func TestSubscribeWhileSocketsNeedIt(t *testing.T) {
	src := newSource()
	h, subs := newTestHub(t, src)
	a, b := newMember("a", 10), newMember("b", 10)
	sa := join(t, h, a, NoSince)
	sb := join(t, h, b, NoSince)
	if n := subs.subscribed(ch); n != 1 {
		t.Fatalf("subscribed %d times", n)
	}
	sa.Leave()
	sa.Leave()
	if n := subs.subscribed(ch); n != 1 {
		t.Fatalf("unsubscribed while a socket remains: %d", n)
	}
	sb.Leave()
	if n := subs.subscribed(ch); n != 0 || h.Topics() != 0 {
		t.Fatalf("still subscribed after the last socket left: %d, %d topics", n, h.Topics())
	}
	join(t, h, newMember("c", 10), NoSince)
	if n := subs.subscribed(ch); n != 1 {
		t.Fatalf("not subscribed again: %d", n)
	}
}

func TestOverflowOnlyHitsTheSlowSocket(t *testing.T) {
	src := newSource()
	h, _ := newTestHub(t, src)
	slow, fast := newMember("slow", 3), newMember("fast", 100)
	join(t, h, slow, NoSince)
	join(t, h, fast, NoSince)
	for seq := uint64(1); seq <= 5; seq++ {
		h.Message(ch, fr(seq, int64(seq)))
	}
	fast.waitFor(t, "hello:0/0 1 2 3 4 5")
	slow.mu.Lock()
	n := slow.overflows
	slow.mu.Unlock()
	if n != 1 || slow.summary() != "hello:0/0 1 2" {
		t.Fatalf("slow member: %d overflows, got %q", n, slow.summary())
	}
}

func TestResubscribedFillsToCurrentState(t *testing.T) {
	src := newSource()
	src.state = stream.State{Seq: 3, OrderSum: 3}
	h, _ := newTestHub(t, src)
	a := newMember("a", 100)
	join(t, h, a, NoSince)
	src.publish(4, 6, stream.State{Seq: 6, OrderSum: 6})
	h.Resubscribed(ch)
	a.waitFor(t, "hello:3/3 4 5 6")
}

// TestFramesDuringSubscribe: frames that arrive between the subscription
// and the state read are sorted out once the state is known.
func TestFramesDuringSubscribe(t *testing.T) {
	src := newSource()
	src.state = stream.State{Seq: 3, OrderSum: 3}
	h, subs := newTestHub(t, src)
	subs.hook = func(string) {
		h.Message(ch, fr(3, 3))
		h.Message(ch, fr(4, 4))
	}
	a := newMember("a", 100)
	join(t, h, a, NoSince)
	h.Message(ch, fr(5, 5))
	a.waitFor(t, "hello:4/4 5")
}

// TestJoinWhileTopicLags: a socket that joins when Redis's state is ahead of
// what the topic delivered gets hello with the newer seq, and the topic then
// skips for it what its hello (or replay) covered.
func TestJoinWhileTopicLags(t *testing.T) {
	src := newSource()
	src.publish(1, 12, stream.State{Seq: 10, OrderSum: 10})
	h, _ := newTestHub(t, src)
	live := newMember("live", 100)
	join(t, h, live, NoSince)
	src.mu.Lock()
	src.state = stream.State{Seq: 12, OrderSum: 12} // 11 and 12 are on their way
	src.gate = make(chan struct{})
	src.mu.Unlock()
	plain, replayer := newMember("plain", 100), newMember("replayer", 100)
	join(t, h, plain, NoSince)
	s := join(t, h, replayer, 8)
	done := make(chan error, 1)
	go func() { done <- s.Replay(context.Background()) }()
	for seq := uint64(11); seq <= 13; seq++ {
		h.Message(ch, fr(seq, int64(seq)))
	}
	live.waitFor(t, "hello:10/10 11 12 13")
	plain.waitFor(t, "hello:12/12 13")
	close(src.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	replayer.waitFor(t, "hello:12/12 9 10 11 12 13")
}

// TestFrameBeyondStateIsDropped: an early frame whose seq the merchant's
// state does not know (a publisher outside the contract) is dropped, and
// the real stream goes on.
func TestFrameBeyondStateIsDropped(t *testing.T) {
	src := newSource()
	src.state = stream.State{Seq: 1, OrderSum: 1}
	h, _ := newTestHub(t, src)
	a := newMember("a", 100)
	join(t, h, a, NoSince)
	h.Message(ch, fr(1000000, 1))
	h.Message(ch, fr(1, 1)) // duplicate of hello's
	src.setState(stream.State{Seq: 2, OrderSum: 2})
	h.Message(ch, fr(2, 2))
	a.waitFor(t, "hello:1/1 2")
	// Let the gap timer run its course; nothing more may come.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		h.mu.RLock()
		tp := h.topics["m1"]
		h.mu.RUnlock()
		tp.mu.Lock()
		n := len(tp.pending)
		tp.mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling, bounded by the deadline
	}
	h.Message(ch, fr(3, 3))
	a.waitFor(t, "hello:1/1 2 3")
	if n := testCount(h.m.BadFrames); n != 1 {
		t.Fatalf("bad frames %v", n)
	}
}
