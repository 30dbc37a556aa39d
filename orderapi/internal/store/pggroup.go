package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"orderpush/pkg/wire"
)

// pgCommitters is how many groups PostgreSQL writes at once. While one
// group waits for its commit's WAL flush the next is already being sent;
// more than two only queue on the same merchant rows.
const pgCommitters = 2

// pgGroup stores a group on PostgreSQL in one transaction sent as two
// pipelines: BEGIN and every order's createOrderPG (order row and merchant
// bump in one statement), then, with the frames built from the seqs that
// came back, every order's seq, every event row and COMMIT. That is two round trips for the
// whole group where one transaction per order took five, and the round
// trips (each a wake-up of PostgreSQL and of this process on a busy
// machine) were where an order's time went.
//
// A pipeline cannot roll back one statement, so when anything fails while
// the outcome is still certain (PostgreSQL refused a statement, a frame
// could not be built) the transaction is rolled back and the group is
// written again by savepointGroup, where a bad order fails alone. When the
// outcome is uncertain (the connection broke around COMMIT) every order of
// the group fails, as a lone transaction's would.
func (s *Store) pgGroup(ctx context.Context, batch []*createReq, res []createRes) {
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
		sub := make([]*createReq, len(live))
		subRes := make([]createRes, len(live))
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
		res[i] = createRes{err: err}
	}
}

// pipelineGroup writes and commits the live orders of batch on pc. retry
// reports that a failure left nothing committed, so the group may be
// written again.
func (s *Store) pipelineGroup(ctx context.Context, pc *pgx.Conn, batch []*createReq, live []int, res []createRes) (retry bool, err error) {
	type merchantRow struct {
		seq     uint64
		pending int64
	}
	rows := make([]merchantRow, len(batch))
	// Phase 1: the orders and merchant bumps. An order whose number was
	// taken wrote nothing and goes again with a fresh number. COMMIT is not
	// sent yet, so any failure here leaves nothing: retry is true.
	todo := live
	for try := 0; len(todo) > 0; try++ {
		if try == maxOrderNoTries {
			return true, fmt.Errorf("insert order: %d order number collisions in a row", maxOrderNoTries)
		}
		b := &pgx.Batch{}
		if try == 0 {
			b.Queue("BEGIN")
		}
		for _, i := range todo {
			r := batch[i]
			o := &res[i].o
			if try == 0 {
				now := s.now()
				*o = wire.Order{MerchantID: r.in.MerchantID, UserID: r.in.UserID, Date: r.in.Date,
					Price: r.in.Price, Status: wire.StatusPending, CreatedAt: now}
			}
			o.OrderNo = s.opt.NewOrderNo(o.UserID, o.CreatedAt)
			b.Queue(s.q.createOrderPG, o.OrderNo, o.MerchantID, o.UserID, o.Date, int64(o.Price), o.CreatedAt.UnixMilli())
		}
		br := pc.SendBatch(ctx, b)
		if try == 0 {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return true, fmt.Errorf("begin: %w", err)
			}
		}
		var again []int
		for _, i := range todo {
			err := br.QueryRow().Scan(&rows[i].seq, &rows[i].pending)
			if errors.Is(err, pgx.ErrNoRows) {
				again = append(again, i)
				continue
			}
			if err != nil {
				br.Close()
				return true, fmt.Errorf("insert order, bump merchant %s: %w", batch[i].in.MerchantID, err)
			}
		}
		if err := br.Close(); err != nil {
			return true, fmt.Errorf("insert orders: %w", err)
		}
		todo = again
	}
	// Phase 2: the event rows, then COMMIT, in one pipeline.
	b := &pgx.Batch{}
	for _, i := range live {
		o := res[i].o
		ev, err := buildEvent(o, rows[i].seq, rows[i].pending, o.CreatedAt, batch[i].frame)
		if err != nil {
			return true, err
		}
		res[i].ev = ev
		b.Queue(s.q.setOrderSeq, int64(ev.Seq), o.OrderNo)
		b.Queue(s.q.insertEvent, ev.MerchantID, int64(ev.Seq), ev.Frame, ev.OrderSum, ev.CreatedMS)
	}
	b.Queue("COMMIT")
	br := pc.SendBatch(ctx, b)
	for _, i := range live {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return certain(err), fmt.Errorf("order seq %s/%d: %w", res[i].ev.MerchantID, res[i].ev.Seq, err)
		}
		if _, err := br.Exec(); err != nil {
			br.Close()
			return certain(err), fmt.Errorf("insert event %s/%d: %w", res[i].ev.MerchantID, res[i].ev.Seq, err)
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
