package admission

import (
	"net/netip"
	"testing"
	"time"
)

func TestRateLimiterBucket(t *testing.T) {
	t.Parallel()
	l := newRateLimiter(20, 40, 1024)
	now := time.Unix(1_800_000_000, 0)
	a := netip.MustParseAddr("198.51.100.1")
	for i := range 40 {
		if ok, _ := l.allow(a, now); !ok {
			t.Fatalf("burst: attempt %d refused", i)
		}
	}
	ok, wait := l.allow(a, now)
	if ok || wait <= 0 || wait > 50*time.Millisecond {
		t.Fatalf("41st: ok %v wait %v, want refused with wait <= 50ms", ok, wait)
	}
	// Another address is not affected.
	if ok, _ := l.allow(netip.MustParseAddr("198.51.100.2"), now); !ok {
		t.Fatal("a second address was refused")
	}
	// 100 ms later two tokens have come back, not three.
	now = now.Add(100 * time.Millisecond)
	for i := range 2 {
		if ok, _ := l.allow(a, now); !ok {
			t.Fatalf("refill: attempt %d refused", i)
		}
	}
	if ok, _ := l.allow(a, now); ok {
		t.Fatal("refill gave more than the rate")
	}
}

// TestRateLimiterBounded: a flood of distinct addresses never holds more
// buckets than the cap, and the addresses still counting are refused.
func TestRateLimiterBounded(t *testing.T) {
	t.Parallel()
	const maxBuckets = 1024
	l := newRateLimiter(1, 2, maxBuckets)
	now := time.Unix(1_800_000_000, 0)
	for i := range 200_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.allow(a, now)
		if n := l.size(); i%997 == 0 && n > maxBuckets {
			t.Fatalf("after %d addresses: %d buckets, cap %d", i, n, maxBuckets)
		}
		now = now.Add(time.Microsecond)
	}
	if n := l.size(); n > maxBuckets {
		t.Fatalf("%d buckets, cap %d", n, maxBuckets)
	}
	// An address hammering inside the flood stays limited.
	hot := netip.MustParseAddr("203.0.113.7")
	refused := 0
	for range 100 {
		if ok, _ := l.allow(hot, now); !ok {
			refused++
		}
		for j := range 10 {
			l.allow(netip.AddrFrom4([4]byte{11, 0, byte(refused), byte(j)}), now)
		}
	}
	if refused < 90 {
		t.Fatalf("hot address refused %d of 100, want >= 90", refused)
	}
}

func BenchmarkRateLimiterAllow(b *testing.B) {
	l := newRateLimiter(20, 40, DefaultMaxBuckets)
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
}
