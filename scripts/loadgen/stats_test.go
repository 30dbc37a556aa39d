package loadgen

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestSummaryPercentilesByNearestRank(t *testing.T) {
	t.Parallel()
	var l Latencies
	// 1..1000 ms in a shuffled order: Pq by nearest rank is exactly q*1000 ms.
	r := rand.New(rand.NewPCG(1, 2))
	for _, i := range r.Perm(1000) {
		l.Add(time.Duration(i+1) * time.Millisecond)
	}
	s := l.Summary()
	want := Summary{Count: 1000, Mean: 500500 * time.Microsecond, P50: 500 * time.Millisecond, P90: 900 * time.Millisecond,
		P99: 990 * time.Millisecond, P999: 999 * time.Millisecond, Max: 1000 * time.Millisecond}
	if s != want {
		t.Fatalf("summary\n got %+v\nwant %+v", s, want)
	}
}

func TestSummarySmallAndEmpty(t *testing.T) {
	t.Parallel()
	var empty Latencies
	if s := empty.Summary(); s != (Summary{}) {
		t.Fatalf("empty summary = %+v", s)
	}
	var one Latencies
	one.Add(7)
	if s := one.Summary(); s.P50 != 7 || s.P999 != 7 || s.Max != 7 || s.Count != 1 {
		t.Fatalf("one sample: %+v", s)
	}
	// Ten samples: p99 and p99.9 are the maximum, p90 the ninth, p50 the fifth.
	var ten Latencies
	for i := 10; i >= 1; i-- {
		ten.Add(time.Duration(i))
	}
	s := ten.Summary()
	if s.P50 != 5 || s.P90 != 9 || s.P99 != 10 || s.P999 != 10 || s.Max != 10 {
		t.Fatalf("ten samples: %+v", s)
	}
	// A single outlier among 1000 is the max and the p99.9 neighbour, not the p99.
	var tail Latencies
	for range 999 {
		tail.Add(time.Millisecond)
	}
	tail.Add(time.Second)
	s = tail.Summary()
	if s.P99 != time.Millisecond || s.P999 != time.Millisecond || s.Max != time.Second {
		t.Fatalf("outlier: %+v", s)
	}
}

func TestMergeKeepsEverySample(t *testing.T) {
	t.Parallel()
	var a, b Latencies
	for i := range 100 {
		a.Add(time.Duration(i))
		b.Add(time.Duration(1000 + i))
	}
	a.Merge(&b)
	if s := a.Summary(); s.Count != 200 || s.Max != 1099 || s.P50 != 99 {
		t.Fatalf("merged: %+v", s)
	}
}

func TestSeqTrackAndDelivery(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		from   uint64
		seqs   []uint64
		upto   uint64
		want   Delivery
		wantOK bool
	}{
		{"all in order", 0, []uint64{1, 2, 3, 4}, 4,
			Delivery{Sockets: 1, Expected: 4, Received: 4}, true},
		{"joined late", 2, []uint64{3, 4}, 4,
			Delivery{Sockets: 1, Expected: 2, Received: 2}, true},
		{"tail missing", 0, []uint64{1, 2}, 4,
			Delivery{Sockets: 1, Expected: 4, Received: 2, Lost: 2}, false},
		{"gap", 0, []uint64{1, 3, 4}, 4,
			Delivery{Sockets: 1, Expected: 4, Received: 3, Lost: 1}, false},
		{"duplicate", 0, []uint64{1, 2, 2, 3}, 3,
			Delivery{Sockets: 1, Expected: 3, Received: 3, Stale: 1}, false},
		{"reorder counts as lost and stale", 0, []uint64{1, 3, 2}, 3,
			Delivery{Sockets: 1, Expected: 3, Received: 2, Lost: 1, Stale: 1}, false},
		{"old frame before hello seq", 5, []uint64{4, 6}, 6,
			Delivery{Sockets: 1, Expected: 1, Received: 1, Stale: 1}, false},
		{"extra above published", 0, []uint64{1, 2, 3}, 2,
			Delivery{Sockets: 1, Expected: 2, Received: 2, Extra: 1}, false},
		{"nothing published", 0, nil, 0,
			Delivery{Sockets: 1}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tr := SeqTrack{From: c.from}
			for _, s := range c.seqs {
				tr.Observe(s)
			}
			var d Delivery
			d.Add(tr, c.upto)
			if d != c.want {
				t.Fatalf("delivery\n got %+v\nwant %+v", d, c.want)
			}
			if d.OK() != c.wantOK {
				t.Fatalf("OK() = %v, want %v", d.OK(), c.wantOK)
			}
		})
	}
}

func TestDeliveryMergeSumsSockets(t *testing.T) {
	t.Parallel()
	var total Delivery
	for i := range 3 {
		var d Delivery
		tr := SeqTrack{}
		for s := uint64(1); s <= uint64(i+1); s++ {
			tr.Observe(s)
		}
		d.Add(tr, 3)
		total.Merge(d)
	}
	want := Delivery{Sockets: 3, Expected: 9, Received: 6, Lost: 3}
	if total != want {
		t.Fatalf("merged %+v, want %+v", total, want)
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	xs := []float64{3, 1, 2}
	if m, lo, hi := Median(xs); m != 2 || lo != 1 || hi != 3 {
		t.Fatalf("Median(3,1,2) = %v %v %v", m, lo, hi)
	}
	if xs[0] != 3 {
		t.Fatal("Median modified its input")
	}
	if m, _, _ := Median([]float64{1, 2, 3, 10}); m != 2.5 {
		t.Fatalf("even median = %v", m)
	}
	if m, _, _ := Median(nil); !math.IsNaN(m) {
		t.Fatalf("empty median = %v", m)
	}
}

func TestAggregateMediansAndVerdict(t *testing.T) {
	t.Parallel()
	var ms []Metric
	for run, v := range []float64{10, 30, 20} {
		r := Report{Scenario: "latency", Variant: "redis", Run: run + 1}
		m := r.Add("p99", v, "ms")
		m.Floor = 10
		m.Target = &Target{Op: "<=", Value: 25}
		m.RatioTarget = &Target{Op: "<=", Value: 2}
		ms = append(ms, r.Metrics...)
	}
	rows := Aggregate(ms)
	if len(rows) != 1 {
		t.Fatalf("rows = %d", len(rows))
	}
	r := rows[0]
	if r.Median != 20 || r.Lo != 10 || r.Hi != 30 || r.FloorMedian != 10 || r.RatioMedian != 2 || r.Runs != 3 {
		t.Fatalf("row %+v", r)
	}
	if v := verdict(r.Target, r.RatioTarget, r.Median, r.RatioMedian); v != "met" {
		t.Fatalf("verdict %q", v)
	}
	if v := verdict(r.Target, r.RatioTarget, 26, 2); v != "MISSED" {
		t.Fatalf("verdict over target %q", v)
	}
	if v := verdict(r.Target, r.RatioTarget, 20, 2.1); v != "MISSED" {
		t.Fatalf("verdict over ratio %q", v)
	}
}
