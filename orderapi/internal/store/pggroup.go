package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"orderpush/pkg/wire"
)

// pgCommitters is how many groups PostgreSQL writes at once. While one
// group waits for its commit's WAL flush the next is already being sent.
// Four took 1.17x the closed-loop orders per second of two, but their
// smaller groups cost 1.16x the CPU per order (scripts/BENCHMARKS.md,
// issue 13).
const pgCommitters = 2

// pgGroup stores a group on PostgreSQL in one transaction sent as two
// pipelines of a few statements each, whatever the group's size. The
// first is BEGIN, pgBumpMerchants (every merchant of the group moved by
// its number of orders, so its seqs are reserved in one row update) and
// pgInsertOrders (every order row, with its seq read back from the bumped
// merchant row). The second, with the frames built from the seqs,
// is pgInsertEvents (every event row), the alerts and COMMIT. The
// statements per group used to be three per order plus two; each statement
// costs PostgreSQL an executor start and index lookups of its own, and an
// order row written without its seq had to be written again (a second heap
// tuple and index entries) when the seq came back.
//
// A pipeline cannot roll back one statement, so when anything fails while
// the outcome is still certain (PostgreSQL refused a statement, a frame
// could not be built) the transaction is rolled back and the group is
// written again by savepointGroup, where a bad order fails alone. When the
// outcome is uncertain (the connection broke around COMMIT) every order of
// the group fails, as a lone transaction's would.
func (s *Store) pgGroup(ctx context.Context, batch []*groupReq, res []groupRes) {
	live := make([]int, 0, len(batch))
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			res[i].err = err // not started: nothing of it is written
			continue
		}
		live = append(live, i)
	}
	if len(live) == 0 {
		return
	}
	conn, err := s.w.Conn(ctx)
	if err != nil {
		for _, i := range live {
			res[i].err = fmt.Errorf("connection: %w", err)
		}
		return
	}
	defer conn.Close()
	var retry bool
	err = conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		var werr error
		retry, werr = s.pipelineGroup(ctx, pc, batch, live, res)
		if werr == nil {
			return nil
		}
		if pc.PgConn().TxStatus() != 'I' {
			if _, rerr := pc.Exec(ctx, "ROLLBACK"); rerr != nil {
				retry = false
				return errors.Join(werr, driver.ErrBadConn) // never reuse a connection left mid-transaction
			}
		}
		return werr
	})
	if err == nil {
		return
	}
	if retry {
		sub := make([]*groupReq, len(live))
		subRes := make([]groupRes, len(live))
		for j, i := range live {
			sub[j] = batch[i]
		}
		s.savepointGroup(ctx, sub, subRes)
		for j, i := range live {
			res[i] = subRes[j]
		}
		return
	}
	for _, i := range live {
		res[i] = groupRes{err: err}
	}
}

// The group's statements. Each takes one array per column, so its text,
// and the prepared statement pgx caches for it, is the same for every group.
const (
	// Merchants come sorted (groupCommit.commit): their rows are locked in
	// that order, so two groups never wait on each other in a cycle.
	pgBumpMerchants = `INSERT INTO merchants AS m (id, seq, pending)
		SELECT id, n, n FROM unnest($1::text[], $2::bigint[]) AS t(id, n)
		ON CONFLICT (id) DO UPDATE SET seq = m.seq + excluded.seq, pending = m.pending + excluded.pending
		RETURNING id, seq, pending`
	// back is how many orders of the same merchant come after this one in
	// the group, so its seq is the bumped row's seq minus back. An order
	// whose number was taken is not written, and its number is returned.
	// Rows are inserted in the group's order, so a merchant's ids follow
	// its seqs (but for an order that went again with another number).
	pgInsertOrders = `WITH t AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
			$5::bigint[], $6::bigint[], $7::bigint[]) WITH ORDINALITY
			AS t(order_no, merchant_id, user_id, date, price_cents, created_ms, back, ord)),
		o AS (INSERT INTO orders (order_no, merchant_id, user_id, date, price_cents, status, created_ms, seq)
			SELECT t.order_no, t.merchant_id, t.user_id, t.date, t.price_cents, 'pending', t.created_ms, m.seq - t.back
			FROM t JOIN merchants m ON m.id = t.merchant_id ORDER BY t.ord
			ON CONFLICT (order_no) DO NOTHING RETURNING order_no)
		SELECT order_no FROM t EXCEPT ALL SELECT order_no FROM o`
	pgInsertEvents = `INSERT INTO events (merchant_id, seq, frame, order_sum, created_ms, published)
		SELECT *, FALSE FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[])`
)

// pipelineGroup writes and commits the live orders of batch on pc. retry
// reports that a failure left nothing committed, so the group may be
// written again.
func (s *Store) pipelineGroup(ctx context.Context, pc *pgx.Conn, batch []*groupReq, live []int, res []groupRes) (retry bool, err error) {
	// A merchant's orders are contiguous in the sorted batch: the last of
	// them gets the merchant's new seq, each earlier one a seq less.
	var ids []string
	var counts []int64
	for _, i := range live {
		if m := batch[i].in.MerchantID; len(ids) == 0 || ids[len(ids)-1] != m {
			ids, counts = append(ids, m), append(counts, 0)
		}
		counts[len(counts)-1]++
	}
	back := make([]int64, len(batch))
	for j := len(live) - 2; j >= 0; j-- {
		if i, next := live[j], live[j+1]; batch[i].in.MerchantID == batch[next].in.MerchantID {
			back[i] = back[next] + 1
		}
	}
	now := s.now()
	for _, i := range live {
		r := batch[i]
		res[i].o = wire.Order{MerchantID: r.in.MerchantID, UserID: r.in.UserID, Date: r.in.Date,
			Price: r.in.Price, Status: wire.StatusPending, CreatedAt: now}
	}
	// Phase 1: the merchants and the orders. An order whose number was
	// taken wrote nothing and goes again with a fresh number and the seq
	// reserved for it. COMMIT is not sent yet, so any failure here leaves
	// nothing: retry is true.
	type merchantRow struct{ seq, pending int64 }
	merchants := make(map[string]merchantRow, len(ids))
	drawn := make(map[string]bool, len(live))
	todo := live
	for try := 0; len(todo) > 0; try++ {
		if try == maxOrderNoTries {
			return true, fmt.Errorf("insert order: %d order number collisions in a row", maxOrderNoTries)
		}
		n := len(todo)
		no, merchant, user, date := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		price, created, backs := make([]int64, n), make([]int64, n), make([]int64, n)
		for j, i := range todo {
			o := &res[i].o
			// Numbers are unique within the group, so a number coming back
			// names exactly one order.
			o.OrderNo = ""
			for range maxOrderNoTries {
				if number := s.opt.NewOrderNo(o.UserID, o.CreatedAt); !drawn[number] {
					o.OrderNo = number
					break
				}
			}
			if o.OrderNo == "" {
				return true, fmt.Errorf("order number: %d collisions in a row", maxOrderNoTries)
			}
			drawn[o.OrderNo] = true
			no[j], merchant[j], user[j], date[j] = o.OrderNo, o.MerchantID, o.UserID, o.Date
			price[j], created[j], backs[j] = int64(o.Price), o.CreatedAt.UnixMilli(), back[i]
		}
		b := &pgx.Batch{}
		if try == 0 {
			b.Queue("BEGIN")
			b.Queue(pgBumpMerchants, ids, counts)
		}
		b.Queue(pgInsertOrders, no, merchant, user, date, price, created, backs)
		br := pc.SendBatch(ctx, b)
		if try == 0 {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return true, fmt.Errorf("begin: %w", err)
			}
			var id string
			var m merchantRow
			rows, _ := br.Query()
			if _, err := pgx.ForEachRow(rows, []any{&id, &m.seq, &m.pending}, func() error {
				merchants[id] = m
				return nil
			}); err != nil {
				br.Close()
				return true, fmt.Errorf("bump merchants: %w", err)
			}
		}
		rows, _ := br.Query()
		taken, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return true, fmt.Errorf("insert orders: %w", err)
		}
		var again []int
		for _, i := range todo {
			if slices.Contains(taken, res[i].o.OrderNo) {
				again = append(again, i)
			}
		}
		todo = again
	}
	// Phase 2: the event rows, the alerts, then COMMIT, in one pipeline.
	n := len(live)
	evMerchant, evSeq, evFrame, evSum, evCreated := make([]string, n), make([]int64, n), make([]string, n), make([]int64, n), make([]int64, n)
	for j, i := range live {
		o := res[i].o
		m := merchants[o.MerchantID]
		ev, err := buildEvent(o, uint64(m.seq-back[i]), m.pending-back[i], o.CreatedAt, batch[i].frame)
		if err != nil {
			return true, err
		}
		res[i].ev = ev
		evMerchant[j], evSeq[j], evFrame[j], evSum[j], evCreated[j] = ev.MerchantID, int64(ev.Seq), ev.Frame, ev.OrderSum, ev.CreatedMS
	}
	b := &pgx.Batch{}
	b.Queue(pgInsertEvents, evMerchant, evSeq, evFrame, evSum, evCreated)
	if s.opt.Alerts.on() {
		for _, i := range live {
			b.Queue(s.aq.insert, s.alertArgs(res[i].o)...)
		}
	}
	b.Queue("COMMIT")
	br := pc.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return certain(err), fmt.Errorf("insert events: %w", err)
	}
	if s.opt.Alerts.on() {
		for _, i := range live {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return certain(err), fmt.Errorf("schedule alerts of %s: %w", res[i].o.OrderNo, err)
			}
		}
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return certain(err), fmt.Errorf("commit: %w", err)
	}
	if tag.String() != "COMMIT" {
		// PostgreSQL answers COMMIT of a failed transaction with ROLLBACK.
		return true, errors.New("commit: the transaction was rolled back")
	}
	return false, nil
}

// certain reports whether err is PostgreSQL refusing a statement, after
// which the transaction is certainly not committed; any other error (a
// broken connection, a deadline) leaves a sent COMMIT's outcome unknown.
func certain(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe)
}
