package loadgen

import (
	"math"
	"slices"
	"time"
)

// Latencies collects samples in nanoseconds. Not safe for concurrent use:
// give each goroutine its own and Merge them.
type Latencies struct {
	ns []int64
}

// Add records one sample.
func (l *Latencies) Add(d time.Duration) { l.ns = append(l.ns, int64(d)) }

// Merge appends o's samples.
func (l *Latencies) Merge(o *Latencies) { l.ns = append(l.ns, o.ns...) }

// Len is the number of samples.
func (l *Latencies) Len() int { return len(l.ns) }

// Summary is the distribution of a set of samples.
type Summary struct {
	Count int
	Mean  time.Duration
	P50   time.Duration
	P90   time.Duration
	P99   time.Duration
	P999  time.Duration
	Max   time.Duration
}

// Summary sorts the samples and computes the percentiles by nearest rank
// over all of them: Pq is the smallest sample with at least q of all
// samples at or below it. No sample is dropped or bucketed.
func (l *Latencies) Summary() Summary {
	n := len(l.ns)
	if n == 0 {
		return Summary{}
	}
	slices.Sort(l.ns)
	var sum float64
	for _, v := range l.ns {
		sum += float64(v)
	}
	return Summary{
		Count: n,
		Mean:  time.Duration(sum / float64(n)),
		P50:   time.Duration(l.ns[rank(n, 0.50)]),
		P90:   time.Duration(l.ns[rank(n, 0.90)]),
		P99:   time.Duration(l.ns[rank(n, 0.99)]),
		P999:  time.Duration(l.ns[rank(n, 0.999)]),
		Max:   time.Duration(l.ns[n-1]),
	}
}

// rank is the index of the q-quantile by nearest rank: ceil(q*n) - 1.
func rank(n int, q float64) int {
	// Round first: 0.999*1000 is 998.9999999999999 in floating point.
	r := int(math.Ceil(math.Round(q*float64(n)*1e6)/1e6)) - 1
	return max(0, min(n-1, r))
}

// SeqTrack follows one socket's stream of one merchant: the contract says a
// socket sees each seq at most once and never a smaller one after a larger
// one. Owned by the socket's reader goroutine.
type SeqTrack struct {
	// From is the seq the socket started after (hello.seq, or since).
	From uint64
	// Last is the highest seq seen.
	Last uint64
	// Fresh counts frames with a new highest seq; Gaps counts seqs skipped
	// over (a later arrival of one of them is a reorder, never filled).
	Fresh, Gaps, Stale int64
}

// Observe records one frame's seq and reports whether it was new.
func (t *SeqTrack) Observe(seq uint64) bool {
	if t.Last < t.From {
		t.Last = t.From
	}
	if seq <= t.Last {
		t.Stale++ // a duplicate or a reorder
		return false
	}
	t.Gaps += int64(seq - t.Last - 1)
	t.Last = seq
	t.Fresh++
	return true
}

// Delivery is loss accounting over a set of sockets: every socket should get
// every event of its merchant after it joined, exactly once, in order.
type Delivery struct {
	Sockets  int
	Expected int64 // sum over sockets of the events they should get
	Received int64 // frames that arrived in order with a new seq, within the expected range
	Lost     int64 // sum over sockets of max(0, expected - received)
	Stale    int64 // duplicates or reorders
	Extra    int64 // frames with a seq above what was published
}

// Add accounts one socket that should have seen seqs t.From+1 .. upto.
func (d *Delivery) Add(t SeqTrack, upto uint64) {
	d.Sockets++
	var exp int64
	if upto > t.From {
		exp = int64(upto - t.From)
	}
	got := t.Fresh
	if t.Last > upto {
		// Seqs above upto were counted fresh but were never published by
		// this run; they are extra, not received.
		extra := int64(t.Last - upto)
		d.Extra += extra
		got -= min(got, extra)
	}
	d.Expected += exp
	d.Received += got
	if exp > got {
		d.Lost += exp - got
	}
	d.Stale += t.Stale
}

// Merge adds o's counts.
func (d *Delivery) Merge(o Delivery) {
	d.Sockets += o.Sockets
	d.Expected += o.Expected
	d.Received += o.Received
	d.Lost += o.Lost
	d.Stale += o.Stale
	d.Extra += o.Extra
}

// OK reports zero loss, duplicates, reorders and extras.
func (d Delivery) OK() bool { return d.Lost == 0 && d.Stale == 0 && d.Extra == 0 }

// Median returns the median of xs (the mean of the middle two for an even
// count) and the spread min, max. It does not modify xs.
func Median(xs []float64) (med, lo, hi float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		med = s[n/2]
	} else {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, s[0], s[n-1]
}
