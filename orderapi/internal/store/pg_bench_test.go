package store_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"orderpush/orderapi/internal/store"
	"orderpush/pkg/pgtest"
	"orderpush/pkg/wire"
)

// BenchmarkCreateOrderPostgres places orders from 32 goroutines per CPU
// over 400 merchants, so the group commit forms groups as under load; an op
// is one order, stored and committed.
func BenchmarkCreateOrderPostgres(b *testing.B) {
	s, err := store.Open(b.Context(), pgtest.NewDatabase(b), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var n atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, _, err := s.CreateOrder(b.Context(), store.NewOrder{MerchantID: fmt.Sprintf("m%d", i%400),
				UserID: fmt.Sprintf("u%d", i%1000), Date: "2022-06-22", Price: 3650}, frame(wire.EventOrder)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
