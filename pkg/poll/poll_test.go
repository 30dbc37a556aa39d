package poll_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"orderpush/pkg/poll"
)

// fakeT records a failure instead of failing; Fatalf stops the goroutine
// like testing's does.
type fakeT struct {
	testing.TB
	failed atomic.Bool
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(string, ...any) {
	f.failed.Store(true)
	panic(f)
}

func run(f *fakeT, body func()) {
	defer func() {
		if r := recover(); r != nil && r != f {
			panic(r)
		}
	}()
	body()
}

func TestUntil(t *testing.T) {
	t.Parallel()
	n := 0
	poll.True(t, "the third check", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("checked %d times, want 3", n)
	}
	f := &fakeT{}
	run(f, func() { poll.Within(f, 50*time.Millisecond, "never", func() error { return errors.New("no") }) })
	if !f.failed.Load() {
		t.Fatal("a condition that never holds did not fail the test")
	}
}
