package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"orderpush/pkg/wire"
)

// maxOrderNoTries bounds collision retries. Four random digits per user and
// millisecond make even two collisions in a row rare.
const maxOrderNoTries = 10

// NewOrder is a validated order to store.
type NewOrder struct {
	MerchantID string
	UserID     string
	Date       string
	Price      wire.Cents
}

// Event is one row of a merchant's event log: the socket frame with its seq
// and the orderSum it carries.
type Event struct {
	MerchantID string `db:"merchant_id"`
	Seq        uint64 `db:"seq"`
	Frame      string `db:"frame"`
	OrderSum   int64  `db:"order_sum"`
	CreatedMS  int64  `db:"created_ms"`
}

// FrameFunc builds the socket frame of an event once its seq and the
// merchant's orderSum are known inside the transaction. ts is the event time.
type FrameFunc func(o wire.Order, seq uint64, orderSum int64, ts time.Time) ([]byte, error)

// orderRow is an orders row as scanned.
type orderRow struct {
	OrderNo    string `db:"order_no"`
	MerchantID string `db:"merchant_id"`
	UserID     string `db:"user_id"`
	Date       string `db:"date"`
	PriceCents int64  `db:"price_cents"`
	Status     string `db:"status"`
	CreatedMS  int64  `db:"created_ms"`
	// Receipts: NULL until the first ack / seen.
	DeliveredMS sql.NullInt64 `db:"delivered_ms"`
	SeenMS      sql.NullInt64 `db:"seen_ms"`
}

func (r orderRow) order() wire.Order {
	return wire.Order{
		OrderNo: r.OrderNo, MerchantID: r.MerchantID, UserID: r.UserID, Date: r.Date,
		Price: wire.Cents(r.PriceCents), Status: r.Status, CreatedAt: time.UnixMilli(r.CreatedMS).UTC(),
		DeliveredAt: msTime(r.DeliveredMS), SeenAt: msTime(r.SeenMS),
	}
}

func msTime(ms sql.NullInt64) *time.Time {
	if !ms.Valid {
		return nil
	}
	t := time.UnixMilli(ms.Int64).UTC()
	return &t
}

// now is the clock truncated to the millisecond precision the API shows.
func (s *Store) now() time.Time { return s.opt.Now().UTC().Truncate(time.Millisecond) }

// CreateOrder stores the order, bumps its merchant's seq and pending, and
// writes the "order" event built by frame, in one transaction. Concurrent
// calls share one commit (see groupCommit); each order is still all or
// nothing. It returns the order and its event once the event has been
// through the OnCommit function.
func (s *Store) CreateOrder(ctx context.Context, in NewOrder, frame FrameFunc) (wire.Order, Event, error) {
	if s.group != nil {
		res := s.group.do(ctx, &groupReq{in: in, frame: frame})
		if res.err != nil {
			return wire.Order{}, Event{}, fmt.Errorf("create order: %w", res.err)
		}
		return res.o, res.ev, nil
	}
	var (
		o  wire.Order
		ev Event
	)
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		o, ev, err = s.createInTx(ctx, tx, in, frame)
		return err
	})
	if err != nil {
		return wire.Order{}, Event{}, fmt.Errorf("create order: %w", err)
	}
	return o, ev, nil
}

// createInTx does CreateOrder's writes inside tx.
func (s *Store) createInTx(ctx context.Context, tx *sqlx.Tx, in NewOrder, frame FrameFunc) (wire.Order, Event, error) {
	now := s.now()
	o := wire.Order{MerchantID: in.MerchantID, UserID: in.UserID, Date: in.Date,
		Price: in.Price, Status: wire.StatusPending, CreatedAt: now}
	if err := s.insertOrder(ctx, tx, &o); err != nil {
		return wire.Order{}, Event{}, err
	}
	if err := s.fault(ctx, tx, "order"); err != nil {
		return wire.Order{}, Event{}, err
	}
	var m struct {
		Seq     uint64 `db:"seq"`
		Pending int64  `db:"pending"`
	}
	if err := s.txGet(ctx, tx, &m, s.q.bumpMerchant, in.MerchantID); err != nil {
		return wire.Order{}, Event{}, fmt.Errorf("bump merchant %s: %w", in.MerchantID, err)
	}
	if err := s.fault(ctx, tx, "merchant"); err != nil {
		return wire.Order{}, Event{}, err
	}
	if _, err := s.txExec(ctx, tx, s.q.setOrderSeq, int64(m.Seq), o.OrderNo); err != nil {
		return wire.Order{}, Event{}, fmt.Errorf("order seq: %w", err)
	}
	ev, err := s.insertEvent(ctx, tx, o, m.Seq, m.Pending, now, frame)
	if err != nil {
		return wire.Order{}, Event{}, err
	}
	if err := s.insertAlerts(ctx, tx, o); err != nil {
		return wire.Order{}, Event{}, err
	}
	return o, ev, nil
}

// insertOrder inserts o under a fresh order number, retrying on a collision.
func (s *Store) insertOrder(ctx context.Context, tx *sqlx.Tx, o *wire.Order) error {
	for range maxOrderNoTries {
		o.OrderNo = s.opt.NewOrderNo(o.UserID, o.CreatedAt)
		var id int64
		err := s.txGet(ctx, tx, &id, s.q.insertOrder, o.OrderNo, o.MerchantID, o.UserID, o.Date,
			int64(o.Price), o.CreatedAt.UnixMilli())
		if errors.Is(err, sql.ErrNoRows) {
			continue // the number is taken: draw another
		}
		if err != nil {
			return fmt.Errorf("insert order: %w", err)
		}
		return nil
	}
	return fmt.Errorf("insert order: %d order number collisions in a row", maxOrderNoTries)
}

func (s *Store) insertEvent(ctx context.Context, tx *sqlx.Tx, o wire.Order, seq uint64, orderSum int64,
	now time.Time, frame FrameFunc) (Event, error) {
	ev, err := buildEvent(o, seq, orderSum, now, frame)
	if err != nil {
		return Event{}, err
	}
	if _, err := s.txExec(ctx, tx, s.q.insertEvent, ev.MerchantID, int64(ev.Seq), ev.Frame, ev.OrderSum, ev.CreatedMS); err != nil {
		return Event{}, fmt.Errorf("insert event %s/%d: %w", ev.MerchantID, ev.Seq, err)
	}
	if err := s.fault(ctx, tx, "event"); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// buildEvent builds the event row of o's change with frame.
func buildEvent(o wire.Order, seq uint64, orderSum int64, now time.Time, frame FrameFunc) (Event, error) {
	b, err := frame(o, seq, orderSum, now)
	if err != nil {
		return Event{}, fmt.Errorf("build frame: %w", err)
	}
	return Event{MerchantID: o.MerchantID, Seq: seq, Frame: string(b), OrderSum: orderSum, CreatedMS: now.UnixMilli()}, nil
}

// ProcessOrder marks the order processed. The first call lowers its
// merchant's pending, bumps seq and writes the "order.processed" event built
// by frame, returned with ok true; a later call changes nothing and returns
// the order with ok false. ErrNotFound when there is no such order.
func (s *Store) ProcessOrder(ctx context.Context, orderNo string, frame FrameFunc) (wire.Order, Event, bool, error) {
	o, ev, ok, err := s.transition(ctx, orderNo, s.q.processOrder, s.q.unprocessMerchant,
		func(ms int64) []any { return []any{ms, ms, orderNo} }, frame)
	if err != nil {
		return wire.Order{}, Event{}, false, fmt.Errorf("process order %s: %w", orderNo, err)
	}
	return o, ev, ok, nil
}

// transition is an order's one-time change: update (with args(now in ms))
// returns the row only the first time; then the merchant's counters move
// with merchantQ and the event built by frame is written, in one
// transaction, with ok true, and goes through the OnCommit function before
// transition returns, as an order's does. A later call returns the order
// with ok false. ErrNotFound when there is no such order.
func (s *Store) transition(ctx context.Context, orderNo, update, merchantQ string, args func(int64) []any, frame FrameFunc) (o wire.Order, ev Event, ok bool, err error) {
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		o, ev, ok, err = s.transitionTx(ctx, tx, s.now(), orderNo, update, merchantQ, args, frame)
		return err
	})
	if err == nil && ok {
		s.publishCommitted([]Event{ev})
	}
	return o, ev, ok, err
}

// transitionTx is transition inside tx, at now.
func (s *Store) transitionTx(ctx context.Context, tx *sqlx.Tx, now time.Time, orderNo, update, merchantQ string, args func(int64) []any, frame FrameFunc) (o wire.Order, ev Event, ok bool, err error) {
	var row orderRow
	err = s.txGet(ctx, tx, &row, update, args(now.UnixMilli())...)
	if errors.Is(err, sql.ErrNoRows) {
		// Already done, or no such order: nothing to write.
		if err := s.txGet(ctx, tx, &row, s.q.getOrder, orderNo); errors.Is(err, sql.ErrNoRows) {
			return wire.Order{}, Event{}, false, ErrNotFound
		} else if err != nil {
			return wire.Order{}, Event{}, false, fmt.Errorf("get order: %w", err)
		}
		return row.order(), Event{}, false, nil
	}
	if err != nil {
		return wire.Order{}, Event{}, false, fmt.Errorf("update order: %w", err)
	}
	o = row.order()
	var m Merchant
	if err := s.txGet(ctx, tx, &m, merchantQ, o.MerchantID); err != nil {
		return wire.Order{}, Event{}, false, fmt.Errorf("update merchant %s: %w", o.MerchantID, err)
	}
	ev, err = s.insertEvent(ctx, tx, o, m.Seq, m.Pending, now, frame)
	if err != nil {
		return wire.Order{}, Event{}, false, err
	}
	return o, ev, true, nil
}

// GetOrder returns one order or ErrNotFound.
func (s *Store) GetOrder(ctx context.Context, orderNo string) (wire.Order, error) {
	var row orderRow
	err := s.r.GetContext(ctx, &row, s.q.getOrder, orderNo)
	if errors.Is(err, sql.ErrNoRows) {
		return wire.Order{}, ErrNotFound
	}
	if err != nil {
		return wire.Order{}, fmt.Errorf("get order %s: %w", orderNo, err)
	}
	return row.order(), nil
}

// ListQuery selects a page of a merchant's orders, newest first.
type ListQuery struct {
	MerchantID string
	Status     string // "" for all
	Before     string // order number; "" for the newest
	Limit      int
}

// ListOrders returns up to q.Limit orders and the cursor of the next page
// ("" when there is none). ErrUnknownCursor when q.Before names no order of
// the merchant.
func (s *Store) ListOrders(ctx context.Context, q ListQuery) ([]wire.Order, string, error) {
	args := []any{q.MerchantID}
	query := s.q.listAll
	if q.Status != "" {
		args, query = append(args, q.Status), s.q.listStatus
	}
	if q.Before != "" {
		var id int64
		err := s.r.GetContext(ctx, &id, s.q.orderID, q.Before, q.MerchantID)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, "", ErrUnknownCursor
		}
		if err != nil {
			return nil, "", fmt.Errorf("list orders: cursor: %w", err)
		}
		args = append(args, id)
		query = s.q.listAllBefore
		if q.Status != "" {
			query = s.q.listStatusBefore
		}
	}
	// One row more than asked tells whether another page exists.
	args = append(args, q.Limit+1)
	var rows []orderRow
	if err := s.r.SelectContext(ctx, &rows, query, args...); err != nil {
		return nil, "", fmt.Errorf("list orders %s: %w", q.MerchantID, err)
	}
	next := ""
	if len(rows) > q.Limit {
		rows = rows[:q.Limit]
		next = rows[len(rows)-1].OrderNo
	}
	out := make([]wire.Order, len(rows))
	for i, r := range rows {
		out[i] = r.order()
	}
	return out, next, nil
}

// Merchant is a merchant's current seq and number of pending orders; zeros
// for a merchant without orders.
type Merchant struct {
	Seq     uint64 `db:"seq"`
	Pending int64  `db:"pending"`
}

// Merchant reads a merchant's counters.
func (s *Store) Merchant(ctx context.Context, id string) (Merchant, error) {
	var m Merchant
	err := s.r.GetContext(ctx, &m, s.q.merchant, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Merchant{}, nil
	}
	if err != nil {
		return Merchant{}, fmt.Errorf("merchant %s: %w", id, err)
	}
	return m, nil
}

// Events returns up to limit frames of the merchant's event log with seq
// greater than after, in seq order.
func (s *Store) Events(ctx context.Context, merchantID string, after uint64, limit int) ([]string, error) {
	var frames []string
	if err := s.r.SelectContext(ctx, &frames, s.q.events, merchantID, int64(after), limit); err != nil {
		return nil, fmt.Errorf("events %s after %d: %w", merchantID, after, err)
	}
	return frames, nil
}
