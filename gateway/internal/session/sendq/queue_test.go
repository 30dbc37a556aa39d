package sendq

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"orderpush/pkg/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func entry(s string) Entry { return Entry{Data: []byte(s)} }

func TestTryPushBoundAndOrder(t *testing.T) {
	q := New(3, nil)
	for _, s := range []string{"a", "b", "c"} {
		if !q.TryPush(entry(s)) {
			t.Fatalf("push %s refused", s)
		}
	}
	if q.TryPush(entry("d")) {
		t.Fatal("push beyond the limit accepted")
	}
	got, _ := q.Take(nil)
	if len(got) != 3 || string(got[0].Data) != "a" || string(got[2].Data) != "c" {
		t.Fatalf("took %v", got)
	}
	if q.Len() != 0 || !q.TryPush(entry("e")) {
		t.Fatal("queue not emptied by Take")
	}
	// The previous batch becomes the buffer: cleared, no reallocation.
	next, _ := q.Take(got)
	if len(next) != 1 || string(next[0].Data) != "e" {
		t.Fatalf("took %v", next)
	}
	if got[1].Data != nil {
		t.Fatal("spare batch not cleared")
	}
}

func TestPushWaitsForRoom(t *testing.T) {
	q := New(1, nil)
	if !q.TryPush(entry("a")) {
		t.Fatal("first push refused")
	}
	done := make(chan error, 1)
	go func() { done <- q.Push(context.Background(), entry("b")) }()
	select {
	case err := <-done:
		t.Fatalf("Push returned %v on a full queue", err)
	case <-time.After(50 * time.Millisecond):
	}
	q.Take(nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, _ := q.Take(nil); len(got) != 1 || string(got[0].Data) != "b" {
		t.Fatalf("took %v", got)
	}
}

func TestCloseWakesPushAndRejects(t *testing.T) {
	q := New(1, nil)
	q.TryPush(entry("a"))
	done := make(chan error, 1)
	go func() { done <- q.Push(context.Background(), entry("b")) }()
	q.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Push after Close: %v", err)
	}
	if q.TryPush(entry("c")) || q.Len() != 0 {
		t.Fatal("closed queue accepts or keeps frames")
	}
	q.Close() // idempotent
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := New(1, nil).Push(ctx, entry("x")); err != nil {
		t.Fatalf("push with room but cancelled ctx: %v", err)
	}
}

// TestDrainerProtocol: the push that finds the queue idle starts exactly one
// drainer; an empty Take makes the queue idle again, so the next push starts
// a new one; Wake starts one for no frame (a close) or makes the running
// one look again; nothing starts after Close.
func TestDrainerProtocol(t *testing.T) {
	starts := 0
	q := New(4, func() { starts++ })
	// A new queue is active: its owner starts the first drainer.
	q.TryPush(entry("hello"))
	if starts != 0 {
		t.Fatal("push to a new queue started a drainer")
	}
	if got, more := q.Take(nil); len(got) != 1 || !more {
		t.Fatalf("took %v, more %v", got, more)
	}
	if got, more := q.Take(nil); got != nil || more {
		t.Fatalf("empty take: %v, more %v", got, more)
	}
	q.TryPush(entry("a"))
	q.TryPush(entry("b"))
	if starts != 1 {
		t.Fatalf("%d drainers started for two pushes to an idle queue", starts)
	}
	q.Wake() // a drainer runs: it must look once more, not start another
	if got, more := q.Take(nil); len(got) != 2 || !more {
		t.Fatalf("took %v, more %v", got, more)
	}
	if got, more := q.Take(nil); len(got) != 0 || !more {
		t.Fatalf("take after Wake: %v, more %v (want empty, more)", got, more)
	}
	if _, more := q.Take(nil); more {
		t.Fatal("second empty take still reports more")
	}
	q.Wake()
	if starts != 2 {
		t.Fatalf("Wake on an idle queue: %d starts", starts)
	}
	q.Close()
	q.Wake()
	if q.TryPush(entry("c")) || starts != 2 {
		t.Fatal("closed queue accepted a frame or started a drainer")
	}
	if _, more := q.Take(nil); more {
		t.Fatal("closed queue reports more")
	}
}

func BenchmarkTryPushTake(b *testing.B) {
	q := New(256, nil)
	e := entry(`{"event":"order","seq":1}`)
	var batch []Entry
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		q.TryPush(e)
		if i%64 == 63 {
			batch, _ = q.Take(batch)
		}
	}
}

// A frame the gateway builds is written like every other frame: "<", ">"
// and "&" as they are, and its Head's data the very bytes of its data.
func TestBuildWritesLikeEveryFrame(t *testing.T) {
	e := Build(wire.EventError, wire.ErrorData{Code: "bad", Message: "<b> & </b>"})
	want := `{"event":"error","data":{"code":"bad","message":"<b> & </b>"}}`
	if string(e.Data) != want {
		t.Fatalf("frame %s, want %s", e.Data, want)
	}
	if e.Head.Event != wire.EventError || string(e.Head.Data) != `{"code":"bad","message":"<b> & </b>"}` {
		t.Fatalf("head %+v", e.Head)
	}
	if p := Build(wire.EventPong, nil); string(p.Data) != `{"event":"pong"}` {
		t.Fatalf("pong %s", p.Data)
	}
}
