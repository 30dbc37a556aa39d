package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"

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
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		delivered, current, err = s.ackTx(ctx, tx, s.now(), merchantID, seq)
		return err
	})
	return delivered, current, err
}

// ackTx is Ack inside tx, at now.
func (s *Store) ackTx(ctx context.Context, tx *sqlx.Tx, now time.Time, merchantID string, seq uint64) ([]time.Time, uint64, error) {
	var m Merchant
	if err := s.txGet(ctx, tx, &m, s.q.merchant, merchantID); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, 0, fmt.Errorf("merchant %s: %w", merchantID, err)
	}
	if seq > m.Seq {
		return nil, m.Seq, ErrSeqAhead
	}
	if seq == 0 {
		return nil, m.Seq, nil
	}
	var created []int64
	if err := s.txSelect(ctx, tx, &created, s.q.ackOrders, now.UnixMilli(), merchantID, int64(seq)); err != nil {
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
	o, ev, ok, err := s.transition(ctx, orderNo, s.q.seenOrder, s.q.bumpSeq, seenArgs(orderNo), frame)
	if err != nil {
		return wire.Order{}, Event{}, false, fmt.Errorf("seen order %s: %w", orderNo, err)
	}
	return o, ev, ok, nil
}

func seenArgs(orderNo string) func(int64) []any {
	return func(ms int64) []any { return []any{ms, orderNo} }
}

// BatchResult is what ApplyReceipts did.
type BatchResult struct {
	Delivered   []time.Time  // placement times of the orders the acks delivered
	AcksSkipped int          // acks above their merchant's seq
	FirstSeen   []wire.Order // orders seen for the first time, with Events
	Events      []Event      // their order.seen events, committed
	SeenApplied int          // seen of the merchant's own orders, first or not
	SeenSkipped int          // seen of no order or of another merchant's
}

// ApplyReceipts applies a batch of acks and seen in one transaction, each
// as Ack and Seen would. An ack above its merchant's seq is skipped, as is
// a seen whose order does not exist or belongs to another merchant than
// the one it names: skips write nothing and do not fail the batch. Items
// are applied in merchant order, so that concurrent batches take the
// merchants' rows in the same order. It returns once the order.seen
// events have been through the OnCommit function.
//
// On SQLite the batch rides in the orders' group commit, under its own
// savepoint: the single writer then carries orders and receipts in one
// transaction instead of making each wait for the other's. On PostgreSQL
// it is a transaction of its own: a group's merchant rows are locked in
// merchant order, and a batch's, spanning many merchants, would break that
// order; its acks are one statement there (pgAcks).
func (s *Store) ApplyReceipts(ctx context.Context, acks []wire.AckReceipt, seen []wire.SeenReceipt, frame FrameFunc) (BatchResult, error) {
	acks = slices.SortedStableFunc(slices.Values(acks), func(a, b wire.AckReceipt) int { return cmp.Compare(a.MerchantID, b.MerchantID) })
	seen = slices.SortedStableFunc(slices.Values(seen), func(a, b wire.SeenReceipt) int { return cmp.Compare(a.MerchantID, b.MerchantID) })
	if s.dialect == SQLite {
		res := s.group.do(ctx, &groupReq{receipts: &receiptsReq{acks: acks, seen: seen}, frame: frame})
		if res.err != nil {
			return BatchResult{}, fmt.Errorf("receipts batch: %w", res.err)
		}
		return res.receipts, nil
	}
	var res BatchResult
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		res, err = s.receiptsTx(ctx, tx, s.now(), acks, seen, frame)
		return err
	})
	if err != nil {
		return BatchResult{}, fmt.Errorf("receipts batch: %w", err)
	}
	s.publishCommitted(res.Events)
	return res, nil
}

// pgAckSkipped counts a batch's acks above their merchant's seq (no
// merchant: seq 0), as ackTx would refuse them.
const pgAckSkipped = `SELECT COUNT(*) FROM unnest($1::text[], $2::bigint[]) AS a(merchant_id, seq)
	LEFT JOIN merchants m ON m.id = a.merchant_id
	WHERE a.seq > COALESCE(m.seq, 0)`

// pgAckOrders applies a batch's other acks as ackTx would, in one
// statement: each merchant's orders up to its highest acceptable ack get
// deliveredAt. The rows are locked in (merchant, seq) order first, the
// order a batch of single acks would take them in, so concurrent batches
// cannot deadlock on them.
const pgAckOrders = `WITH a AS (
		SELECT a.merchant_id, MAX(a.seq) AS seq
		FROM unnest($2::text[], $3::bigint[]) AS a(merchant_id, seq)
		JOIN merchants m ON m.id = a.merchant_id
		WHERE a.seq > 0 AND a.seq <= m.seq
		GROUP BY a.merchant_id
	), target AS (
		SELECT o.id FROM orders o JOIN a ON o.merchant_id = a.merchant_id AND o.seq <= a.seq
		WHERE o.delivered_ms IS NULL
		ORDER BY o.merchant_id, o.seq
		FOR UPDATE OF o
	)
	UPDATE orders SET delivered_ms = $1 FROM target
	WHERE orders.id = target.id AND orders.delivered_ms IS NULL
	RETURNING orders.created_ms`

// pgAcks applies a batch's acks on PostgreSQL in two round trips, where
// ackTx takes two per ack: at thousands of acks a second the round trips,
// not the work, were the batch's time.
func pgAcks(ctx context.Context, tx *sqlx.Tx, now time.Time, acks []wire.AckReceipt, res *BatchResult) error {
	merchants, seqs := make([]string, len(acks)), make([]int64, len(acks))
	for i, a := range acks {
		merchants[i], seqs[i] = a.MerchantID, int64(a.Seq)
	}
	if err := tx.GetContext(ctx, &res.AcksSkipped, pgAckSkipped, merchants, seqs); err != nil {
		return fmt.Errorf("acks: %w", err)
	}
	var created []int64
	if err := tx.SelectContext(ctx, &created, pgAckOrders, now.UnixMilli(), merchants, seqs); err != nil {
		return fmt.Errorf("acks: %w", err)
	}
	for _, ms := range created {
		res.Delivered = append(res.Delivered, time.UnixMilli(ms))
	}
	return nil
}

// receiptsTx applies a sorted batch inside tx, at now.
func (s *Store) receiptsTx(ctx context.Context, tx *sqlx.Tx, now time.Time, acks []wire.AckReceipt, seen []wire.SeenReceipt, frame FrameFunc) (BatchResult, error) {
	var res BatchResult
	if s.dialect == Postgres && len(acks) > 0 {
		if err := pgAcks(ctx, tx, now, acks, &res); err != nil {
			return BatchResult{}, err
		}
		acks = nil
	}
	for _, a := range acks {
		d, _, err := s.ackTx(ctx, tx, now, a.MerchantID, a.Seq)
		if errors.Is(err, ErrSeqAhead) {
			res.AcksSkipped++
			continue
		}
		if err != nil {
			return BatchResult{}, err
		}
		res.Delivered = append(res.Delivered, d...)
	}
	for _, r := range seen {
		var row orderRow
		err := s.txGet(ctx, tx, &row, s.q.getOrder, r.OrderNo)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && row.order().MerchantID != r.MerchantID) {
			res.SeenSkipped++
			continue
		}
		if err != nil {
			return BatchResult{}, fmt.Errorf("get order %s: %w", r.OrderNo, err)
		}
		o, ev, first, err := s.transitionTx(ctx, tx, now, r.OrderNo, s.q.seenOrder, s.q.bumpSeq, seenArgs(r.OrderNo), frame)
		if err != nil {
			return BatchResult{}, fmt.Errorf("seen order %s: %w", r.OrderNo, err)
		}
		res.SeenApplied++
		if first {
			res.FirstSeen = append(res.FirstSeen, o)
			res.Events = append(res.Events, ev)
		}
	}
	return res, nil
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
