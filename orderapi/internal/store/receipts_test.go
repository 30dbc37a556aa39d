package store_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/jmoiron/sqlx"

	"orderpush/orderapi/internal/store"
	"orderpush/pkg/wire"
)

// A batch of receipts is one transaction: a failure at its commit leaves
// no deliveredAt, seenAt or event behind; applied again it writes them
// all, skipping another merchant's order.
func TestApplyReceiptsAtomic(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		boom := errors.New("injected")
		var failing atomic.Bool
		s := open(t, url, store.Options{Fault: func(_ context.Context, _ *sqlx.Tx, at string) error {
			if failing.Load() && at == "commit" {
				return boom
			}
			return nil
		}})
		a, _ := create(t, s, "m1", "u1")
		b, _ := create(t, s, "m1", "u1")
		foreign, _ := create(t, s, "m2", "u1")
		acks := []wire.AckReceipt{{MerchantID: "m1", Seq: 2}, {MerchantID: "m2", Seq: 9}}
		seen := []wire.SeenReceipt{{MerchantID: "m1", OrderNo: b.OrderNo}, {MerchantID: "m1", OrderNo: foreign.OrderNo}}
		untouched := func(when string) {
			t.Helper()
			for _, no := range []string{a.OrderNo, b.OrderNo, foreign.OrderNo} {
				if o, err := s.GetOrder(t.Context(), no); err != nil || o.DeliveredAt != nil || o.SeenAt != nil {
					t.Fatalf("%s: order %+v, %v", when, o, err)
				}
			}
			if frames, _ := s.Events(t.Context(), "m1", 0, 10); len(frames) != 2 {
				t.Fatalf("%s: %d events of m1, want 2", when, len(frames))
			}
		}
		failing.Store(true)
		if _, err := s.ApplyReceipts(t.Context(), acks, seen, frame(wire.EventOrderSeen)); !errors.Is(err, boom) {
			t.Fatalf("failed commit: %v; want injected", err)
		}
		untouched("after a failed commit")

		failing.Store(false)
		res, err := s.ApplyReceipts(t.Context(), acks, seen, frame(wire.EventOrderSeen))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Delivered) != 2 || res.AcksSkipped != 1 || res.SeenApplied != 1 || res.SeenSkipped != 1 ||
			len(res.FirstSeen) != 1 || res.FirstSeen[0].OrderNo != b.OrderNo || len(res.Events) != 1 || res.Events[0].Seq != 3 {
			t.Fatalf("result %+v", res)
		}
		if o, _ := s.GetOrder(t.Context(), b.OrderNo); o.DeliveredAt == nil || o.SeenAt == nil {
			t.Fatalf("order %+v: want delivered and seen", o)
		}
		if o, _ := s.GetOrder(t.Context(), foreign.OrderNo); o.DeliveredAt != nil || o.SeenAt != nil {
			t.Fatalf("another merchant's order %+v got receipts", o)
		}
	})
}

// A batch returns after its order.seen events went through the OnCommit
// function, like an order's event.
func TestApplyReceiptsPublishesBeforeReturn(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		s := open(t, url, store.Options{})
		a, _ := create(t, s, "m1", "u1")
		var published atomic.Pointer[[]store.Event]
		s.OnCommit(func(_ context.Context, evs []store.Event) { published.Store(&evs) })
		res, err := s.ApplyReceipts(t.Context(), nil, []wire.SeenReceipt{{MerchantID: "m1", OrderNo: a.OrderNo}}, frame(wire.EventOrderSeen))
		if err != nil || len(res.Events) != 1 {
			t.Fatalf("result %+v, %v", res, err)
		}
		if evs := published.Load(); evs == nil || len(*evs) != 1 || (*evs)[0] != res.Events[0] {
			t.Fatalf("published %v before the batch returned; want its order.seen %+v", evs, res.Events[0])
		}
	})
}

// A batch's acks apply as they would one at a time (on PostgreSQL they are
// one statement): several for one merchant deliver up to the highest
// acceptable one, one above its merchant's seq or for an unknown merchant
// is skipped, seq 0 changes nothing, and the same batch again delivers
// nothing.
func TestApplyReceiptsAcksLikeSingleAcks(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		s := open(t, url, store.Options{})
		create(t, s, "m1", "u1")
		create(t, s, "m1", "u1")
		third, _ := create(t, s, "m1", "u1")
		create(t, s, "m2", "u1")
		acks := []wire.AckReceipt{{MerchantID: "m1", Seq: 1}, {MerchantID: "m1", Seq: 2}, {MerchantID: "m1", Seq: 7},
			{MerchantID: "m2", Seq: 0}, {MerchantID: "nobody", Seq: 1}, {MerchantID: "m2", Seq: 1}}
		for i, want := range []int{3, 0} {
			res, err := s.ApplyReceipts(t.Context(), acks, nil, frame(wire.EventOrderSeen))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Delivered) != want || res.AcksSkipped != 2 {
				t.Fatalf("pass %d: delivered %d, skipped %d; want %d and 2", i+1, len(res.Delivered), res.AcksSkipped, want)
			}
		}
		if o, err := s.GetOrder(t.Context(), third.OrderNo); err != nil || o.DeliveredAt != nil {
			t.Fatalf("m1's third order, above every accepted ack: %+v %v", o, err)
		}
	})
}
