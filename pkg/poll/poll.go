// Package poll is what a test does instead of sleeping: it waits for a
// condition another goroutine or process makes true by polling it under a
// deadline, and fails the test, saying what it waited for, when the
// deadline passes first.
package poll

import (
	"errors"
	"testing"
	"time"
)

// Timeout bounds every wait: far beyond what a condition needs on a loaded
// machine, short enough that a hang fails one test instead of the run.
const Timeout = 10 * time.Second

// interval is the pause between two checks of a condition.
const interval = 10 * time.Millisecond

// Until checks cond until it returns nil; when Timeout passes first it fails
// t with what and cond's last error.
func Until(t testing.TB, what string, cond func() error) {
	t.Helper()
	Within(t, Timeout, what, cond)
}

// Within is Until with a deadline of the caller's: a wait whose bound is
// part of what the test checks, or that outlasts Timeout on purpose.
func Within(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		time.Sleep(interval) // poll interval, bounded by the deadline
	}
}

// True checks cond until it is true; when Timeout passes first it fails t
// with what.
func True(t testing.TB, what string, cond func() bool) {
	t.Helper()
	TrueWithin(t, Timeout, what, cond)
}

// TrueWithin is True with a deadline of the caller's.
func TrueWithin(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	Within(t, timeout, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

var errNotYet = errors.New("condition still false")
