package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"orderpush/pkg/wire"
)

// ErrSeqAhead means an ack named a seq the merchant has not reached.
var ErrSeqAhead = errors.New("seq above the merchant's current seq")

// Ack records that a client of the merchant received every event up to
// seq: each order of the merchant whose own event has a seq at or below it
// and that was not delivered yet gets deliveredAt = now. It returns the
// placement times of the orders it delivered (for the placed-to-delivered
// histogram). Cumulative and idempotent: a repeated or lower ack changes
// nothing. ErrSeqAhead (and nothing written) when seq is above the
// merchant's current seq; the merchant's current seq comes back with it.
func (s *Store) Ack(ctx context.Context, merchantID string, seq uint64) (delivered []time.Time, current uint64, err error) {
	m, err := s.Merchant(ctx, merchantID)
	if err != nil {
		return nil, 0, err
	}
	if seq > m.Seq {
		return nil, m.Seq, ErrSeqAhead
	}
	if seq == 0 {
		return nil, m.Seq, nil
	}
	now := s.now()
	var created []int64
	if err := s.w.SelectContext(ctx, &created, s.q.ackOrders, now.UnixMilli(), merchantID, int64(seq)); err != nil {
		return nil, m.Seq, fmt.Errorf("ack %s up to %d: %w", merchantID, seq, err)
	}
	out := make([]time.Time, len(created))
	for i, ms := range created {
		out[i] = time.UnixMilli(ms)
	}
	return out, m.Seq, nil
}

// Seen records the first seen of an order: it sets seenAt, bumps the
// merchant's seq and writes the "order.seen" event built by frame, in one
// transaction, returned with ok true. A later call changes nothing and
// returns the order with ok false. ErrNotFound when there is no such order.
func (s *Store) Seen(ctx context.Context, orderNo string, frame FrameFunc) (wire.Order, Event, bool, error) {
	o, ev, ok, err := s.transition(ctx, orderNo, s.q.seenOrder, s.q.bumpSeq,
		func(ms int64) []any { return []any{ms, orderNo} }, frame)
	if err != nil {
		return wire.Order{}, Event{}, false, fmt.Errorf("seen order %s: %w", orderNo, err)
	}
	return o, ev, ok, nil
}

// ReceiptCounts are a merchant's pending orders without deliveredAt and
// without seenAt.
type ReceiptCounts struct {
	Pending     int64 `db:"pending"`
	Undelivered int64 `db:"undelivered"`
	Unseen      int64 `db:"unseen"`
}

// Receipts counts the merchant's pending orders that are undelivered and
// unseen.
func (s *Store) Receipts(ctx context.Context, merchantID string) (ReceiptCounts, error) {
	var c ReceiptCounts
	if err := s.r.GetContext(ctx, &c, s.q.receiptCounts, merchantID); err != nil {
		return ReceiptCounts{}, fmt.Errorf("receipts %s: %w", merchantID, err)
	}
	return c, nil
}
