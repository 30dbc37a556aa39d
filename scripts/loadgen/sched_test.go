package loadgen

import (
	"math"
	"runtime"
	"runtime/debug"
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

// TestHoldGC: no collection while held, however much is allocated (well
// under the headroom), and the settings come back after.
func TestHoldGC(t *testing.T) {
	percent, limit := gcSettings()
	restore := holdGC()
	n := gcCycles()
	var keep [][]byte
	for range 64 {
		keep = append(keep, make([]byte, 1<<20)) // 64 MiB: many times the heap goal of a default collector here
	}
	got := gcCycles() - n
	restore()
	runtime.KeepAlive(keep)
	if got != 0 {
		t.Fatalf("%d collections while held", got)
	}
	if p, l := gcSettings(); p != percent || l != limit {
		t.Fatalf("after restore GC percent %d, memory limit %d; want %d, %d", p, l, percent, limit)
	}
}

// gcSettings reads the GC percent and the memory limit.
func gcSettings() (percent int, limit int64) {
	percent = debug.SetGCPercent(-1)
	debug.SetGCPercent(percent)
	return percent, debug.SetMemoryLimit(-1) // a negative limit only reads it
}
