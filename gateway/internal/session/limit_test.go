package session

import (
	"testing"
	"time"

	"orderpush/pkg/config"
)

// TestLimiter: a burst passes, the next message is refused with a notice
// at most once a second, a quiet client recovers, and a flood is detected
// at twice the burst of refusals or after 10 s over the limit.
func TestLimiter(t *testing.T) {
	l := newLimiter(config.Rate{N: 10, Per: time.Second})
	now := time.Unix(1000, 0)
	for i := range 20 {
		if v := l.take(now); v != allowed {
			t.Fatalf("message %d of the burst: %v", i, v)
		}
	}
	if v := l.take(now); v != refusedNotice {
		t.Fatalf("over the burst: %v", v)
	}
	if v := l.take(now); v != refused {
		t.Fatalf("second refusal in the same second: %v", v)
	}
	// Quiet for 2 s: tokens back, the episode is over.
	now = now.Add(2 * time.Second)
	if v := l.take(now); v != allowed {
		t.Fatalf("after a pause: %v", v)
	}
	if l.refusedN != 0 {
		t.Fatalf("episode not reset: %d", l.refusedN)
	}
	// A flood: refusals reach 2*burst = 40.
	var flooded int
	for i := range 200 {
		if l.take(now) == flood {
			flooded = i
			break
		}
	}
	if flooded == 0 || flooded > 19+40 {
		t.Fatalf("flood detected after %d messages", flooded)
	}

	// Slightly over the limit for 10 s: closed by time, not by count.
	l2 := newLimiter(config.Rate{N: 10, Per: time.Second})
	now = time.Unix(2000, 0)
	var v verdict
	var firstRefused time.Time
	for end := now.Add(60 * time.Second); now.Before(end); now = now.Add(time.Second / 13) { // 13/s against 10/s
		v = l2.take(now)
		if v != allowed && firstRefused.IsZero() {
			firstRefused = now
		}
		if v == flood {
			break
		}
	}
	if over := now.Sub(firstRefused); v != flood || over < 10*time.Second || over > 11*time.Second {
		t.Fatalf("steady overrun: %v after %s over the limit", v, over)
	}

	off := newLimiter(config.Rate{})
	for range 1000 {
		if off.take(now) != allowed {
			t.Fatal("limit off refused")
		}
	}
}

// BenchmarkRefusedMessage: what a message over the limit costs the server
// (no allocation).
func BenchmarkRefusedMessage(b *testing.B) {
	s, _ := newTest(Config{MsgRate: config.Rate{N: 1, Per: time.Minute}})
	s.lim = newLimiter(s.cfg.MsgRate)
	s.lim.overSince = time.Now()
	s.lim.refusedN = -1 << 40 // never reaches the flood count
	s.lim.tokens = 0
	msg := []byte(`{"event":"ping"}`)
	b.ReportAllocs()
	for b.Loop() {
		s.Handle(msg)
	}
}
