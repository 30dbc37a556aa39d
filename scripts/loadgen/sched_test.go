package loadgen

import (
	"math"
	"testing"
	"time"
)

func TestHistQuantiles(t *testing.T) {
	t.Parallel()
	buckets := []float64{0, 0.001, 0.002, 0.004, math.Inf(1)}
	// 90 waits under 1 ms, 9 in 1..2 ms, 1 in 2..4 ms.
	got := histQuantiles(buckets, []uint64{90, 9, 1, 0}, 0.5, 0.99, 0.999)
	want := []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("quantiles %v, want %v", got, want)
		}
	}
	// The open last bucket reads as its lower bound.
	if got := histQuantiles(buckets, []uint64{0, 0, 0, 5}, 0.99); got[0] != 4*time.Millisecond {
		t.Fatalf("open bucket: %v", got)
	}
	if got := histQuantiles(buckets, []uint64{0, 0, 0, 0}, 0.99); got[0] != 0 {
		t.Fatalf("empty: %v", got)
	}
	// A real reading: the runtime's histogram has the shape assumed.
	m := startSched()
	if q := m.quantiles(0.99); len(q) != 1 || q[0] < 0 {
		t.Fatalf("runtime quantiles %v", q)
	}
}
