package sendq

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func entry(s string) Entry { return Entry{Data: []byte(s)} }

func TestTryPushBoundAndOrder(t *testing.T) {
	q := New(3)
	for _, s := range []string{"a", "b", "c"} {
		if !q.TryPush(entry(s)) {
			t.Fatalf("push %s refused", s)
		}
	}
	if q.TryPush(entry("d")) {
		t.Fatal("push beyond the limit accepted")
	}
	select {
	case <-q.Ready():
	default:
		t.Fatal("ready not signalled")
	}
	got := q.Take(nil)
	if len(got) != 3 || string(got[0].Data) != "a" || string(got[2].Data) != "c" {
		t.Fatalf("took %v", got)
	}
	if q.Len() != 0 || !q.TryPush(entry("e")) {
		t.Fatal("queue not emptied by Take")
	}
	// The previous batch becomes the buffer: cleared, no reallocation.
	next := q.Take(got)
	if len(next) != 1 || string(next[0].Data) != "e" {
		t.Fatalf("took %v", next)
	}
	if got[1].Data != nil {
		t.Fatal("spare batch not cleared")
	}
}

func TestPushWaitsForRoom(t *testing.T) {
	q := New(1)
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
	if got := q.Take(nil); len(got) != 1 || string(got[0].Data) != "b" {
		t.Fatalf("took %v", got)
	}
}

func TestCloseWakesPushAndRejects(t *testing.T) {
	q := New(1)
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
	if err := New(1).Push(ctx, entry("x")); err != nil {
		t.Fatalf("push with room but cancelled ctx: %v", err)
	}
}

func BenchmarkTryPushTake(b *testing.B) {
	q := New(256)
	e := entry(`{"event":"order","seq":1}`)
	var batch []Entry
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		q.TryPush(e)
		if i%64 == 63 {
			batch = q.Take(batch)
		}
	}
}
