package loadgen

import (
	"sync/atomic"
	"testing"
	"time"
)

// An order's later events (order.seen) carry its orderNo: they must not add
// a second latency sample for the same order and socket.
func TestAccountOneSamplePerOrder(t *testing.T) {
	t.Parallel()
	f := &orderFlow{mode: ModeHTTP, merchants: []string{"m0"},
		sendAt: make([]atomic.Int64, 2), published: make([]atomic.Int64, 1)}
	f.sendAt[0].Store(int64(10 * time.Millisecond))
	f.sendAt[1].Store(int64(20 * time.Millisecond))
	f.published[0].Store(3)
	f.orderIdx.Store("A", 0)
	f.orderIdx.Store("B", 1)
	s := &Sock{Receipts: []Receipt{
		{Seq: 1, At: 12 * time.Millisecond, OrderNo: "A"},
		{Seq: 2, At: 23 * time.Millisecond, OrderNo: "B"},
		{Seq: 3, At: 900 * time.Millisecond, OrderNo: "A"}, // A's order.seen
	}}
	lat, _ := f.account([]*Sock{s})
	sum := lat.Summary()
	if sum.Count != 2 || sum.Max != 3*time.Millisecond {
		t.Fatalf("samples %d, max %s; want 2 samples, max 3ms", sum.Count, sum.Max)
	}
}
