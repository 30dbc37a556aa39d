package loadgen

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// schedMeter is the load generator's own scheduling latency over a phase:
// how long its goroutines (socket readers, publishers, the tap) waited to
// run once runnable, from the runtime's sampled histogram. Each latency
// sample is taken by one of those goroutines when it runs, so a p99 here
// near the measured p99 says the load generator's own CPU is part of it.
type schedMeter struct{ start *metrics.Float64Histogram }

const schedMetric = "/sched/latencies:seconds"

func readSched() *metrics.Float64Histogram {
	s := []metrics.Sample{{Name: schedMetric}}
	metrics.Read(s)
	return s[0].Value.Float64Histogram()
}

func startSched() schedMeter { return schedMeter{start: readSched()} }

// quantiles returns the upper bound of the bucket holding each quantile of
// the waits since start (0 when there were none).
func (m schedMeter) quantiles(qs ...float64) []time.Duration {
	end := readSched()
	counts := make([]uint64, len(end.Counts))
	for i := range counts {
		counts[i] = end.Counts[i] - m.start.Counts[i]
	}
	return histQuantiles(end.Buckets, counts, qs...)
}

// histQuantiles reads quantiles off a histogram: counts[i] samples fell in
// [buckets[i], buckets[i+1]). Each is its bucket's upper bound, or the lower
// one for the open last bucket; 0 for an empty histogram.
func histQuantiles(buckets []float64, counts []uint64, qs ...float64) []time.Duration {
	var total uint64
	for _, c := range counts {
		total += c
	}
	out := make([]time.Duration, len(qs))
	if total == 0 {
		return out
	}
	for j, q := range qs {
		want := max(1, uint64(math.Ceil(q*float64(total))))
		var cum uint64
		for i, c := range counts {
			cum += c
			if cum >= want {
				b := buckets[i+1]
				if math.IsInf(b, 1) {
					b = buckets[i]
				}
				out[j] = time.Duration(b * float64(time.Second))
				break
			}
		}
	}
	return out
}

// gcHeadroom is how much the load generator's heap may grow during a
// measured phase before its collector runs anyway.
const gcHeadroom = 512 << 20

// holdGC keeps the load generator's own collector out of a measured
// latency phase: it collects once, then not again unless the heap grows by
// gcHeadroom, until the returned func restores the settings. The load
// generator runs on the cores of the stack it measures, and its
// collector's stops and mark work would show as latency of the stack, in
// the floors and the full path alike. gcCycles tells how many ran anyway.
func holdGC() (restore func()) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	limit := debug.SetMemoryLimit(int64(ms.HeapAlloc) + gcHeadroom)
	percent := debug.SetGCPercent(-1)
	return func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	}
}

// gcCycles is the number of collections the load generator has completed.
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
