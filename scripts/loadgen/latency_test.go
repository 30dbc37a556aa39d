package loadgen

import (
	"sync"
	"testing"
)

// TestTurnOrdersBySeq: publishes of one merchant started in reverse order
// still happen in seq order.
func TestTurnOrdersBySeq(t *testing.T) {
	t.Parallel()
	var tn turn
	tn.cond.L = &tn.mu
	const n = 50
	var mu sync.Mutex
	var order []uint64
	var wg sync.WaitGroup
	for seq := uint64(n); seq >= 1; seq-- {
		wg.Go(func() {
			tn.wait(seq)
			mu.Lock()
			order = append(order, seq)
			mu.Unlock()
			tn.finish(seq)
		})
	}
	wg.Wait()
	for i, seq := range order {
		if seq != uint64(i+1) {
			t.Fatalf("published in order %v", order)
		}
	}
}
