package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"orderpush/pkg/wire"
)

// AlertSchedule is when an order's attention alerts come due after it was
// placed (PROTOCOL.md "Receipts and attention"). The zero value schedules
// none: the webhook is off and orders pay nothing for it.
type AlertSchedule struct {
	Undelivered time.Duration // UNDELIVERED_AFTER
	Unseen      time.Duration // UNSEEN_AFTER
}

func (a AlertSchedule) on() bool { return a.Undelivered > 0 && a.Unseen > 0 }

// Alert is a claimed row of the alert schedule: the replica that claimed it
// holds it until LeaseUntil and is the only one to send it meanwhile.
type Alert struct {
	ID         int64  `db:"id"`
	OrderNo    string `db:"order_no"`
	MerchantID string `db:"merchant_id"`
	Type       string `db:"type"`
	PlacedMS   int64  `db:"placed_ms"`
	FiredMS    int64  `db:"fired_ms"`
	// Attempts is the number of attempts finished before this one.
	Attempts int `db:"attempts"`
}

// alertQueries are the alert schedule's statements, rebound for the dialect.
type alertQueries struct {
	insert, claim, cancelReceived           string
	done, retry, release, forOrder, pending string
}

// received is true for an alert whose order already has the receipt the
// alert waits for; such an alert must never fire.
const received = `((a.type = 'order.undelivered' AND o.delivered_ms IS NOT NULL)
	OR (a.type = 'order.unseen' AND o.seen_ms IS NOT NULL))`

func newAlertQueries(db *sqlx.DB, d Dialect) alertQueries {
	r := db.Rebind
	// A claim takes due rows and moves their due_ms to the end of its
	// lease: a replica that dies mid-send leaves the row to come due again
	// when the lease ends, and no second replica takes it before. On
	// PostgreSQL, SKIP LOCKED lets replicas claiming at the same moment
	// take different rows instead of queueing on the same ones. SQLite has
	// one writer: the UPDATE runs under the database's write lock, so two
	// claims cannot overlap and the lease alone is enough.
	lock := ""
	if d == Postgres {
		lock = ` FOR UPDATE OF a SKIP LOCKED`
	}
	return alertQueries{
		insert: r(`INSERT INTO alerts (order_no, merchant_id, type, placed_ms, due_ms)
			VALUES (?, ?, 'order.undelivered', ?, ?), (?, ?, 'order.unseen', ?, ?)`),
		claim: r(`UPDATE alerts SET due_ms = ?, lease = ?, fired_ms = COALESCE(fired_ms, ?)
			WHERE id IN (SELECT a.id FROM alerts a JOIN orders o ON o.order_no = a.order_no
				WHERE a.due_ms <= ? AND (a.fired_ms IS NOT NULL OR NOT ` + received + `)
				ORDER BY a.due_ms LIMIT ?` + lock + `)
			RETURNING id, order_no, merchant_id, type, placed_ms, fired_ms, attempts`),
		cancelReceived: r(`DELETE FROM alerts WHERE id IN (SELECT a.id FROM alerts a
			JOIN orders o ON o.order_no = a.order_no
			WHERE a.due_ms <= ? AND a.fired_ms IS NULL AND ` + received + ` LIMIT ?)`),
		done: r(`UPDATE alerts SET attempts = attempts + 1, completed_ms = ?, due_ms = NULL, lease = NULL
			WHERE id = ? AND lease = ?`),
		retry: r(`UPDATE alerts SET attempts = attempts + 1, due_ms = ?, lease = NULL
			WHERE id = ? AND lease = ?`),
		release: r(`UPDATE alerts SET due_ms = ?, lease = NULL WHERE id = ? AND lease = ?`),
		forOrder: r(`SELECT type, fired_ms, attempts, completed_ms FROM alerts
			WHERE order_no = ? AND fired_ms IS NOT NULL ORDER BY fired_ms, type`),
		pending: r(`SELECT COUNT(*) FROM alerts WHERE due_ms IS NOT NULL AND fired_ms IS NOT NULL`),
	}
}

// insertAlerts schedules o's alerts inside the order's transaction, so an
// order is never committed without them (nor they without the order).
func (s *Store) insertAlerts(ctx context.Context, tx *sqlx.Tx, o wire.Order) error {
	if !s.opt.Alerts.on() {
		return nil
	}
	if _, err := s.txExec(ctx, tx, s.aq.insert, s.alertArgs(o)...); err != nil {
		return fmt.Errorf("schedule alerts of %s: %w", o.OrderNo, err)
	}
	return nil
}

func (s *Store) alertArgs(o wire.Order) []any {
	placed := o.CreatedAt.UnixMilli()
	return []any{
		o.OrderNo, o.MerchantID, placed, placed + s.opt.Alerts.Undelivered.Milliseconds(),
		o.OrderNo, o.MerchantID, placed, placed + s.opt.Alerts.Unseen.Milliseconds(),
	}
}

// ClaimAlerts leases up to n alerts due at now to the caller until
// now+lease, under token. Alerts whose order got its receipt before they
// fired are skipped (CancelReceived removes them). A claimed alert that
// had not fired yet has fired now: its FiredMS is now.
func (s *Store) ClaimAlerts(ctx context.Context, now time.Time, lease time.Duration, token string, n int) ([]Alert, error) {
	ms := now.UnixMilli()
	var out []Alert
	if err := s.w.SelectContext(ctx, &out, s.aq.claim, ms+lease.Milliseconds(), token, ms, ms, n); err != nil {
		return nil, fmt.Errorf("claim alerts: %w", err)
	}
	return out, nil
}

// CancelReceived deletes up to n alerts due at now that never fired and
// whose order has the receipt they wait for. It returns how many it
// deleted.
func (s *Store) CancelReceived(ctx context.Context, now time.Time, n int) (int64, error) {
	res, err := s.w.ExecContext(ctx, s.aq.cancelReceived, now.UnixMilli(), n)
	if err != nil {
		return 0, fmt.Errorf("cancel received alerts: %w", err)
	}
	return res.RowsAffected()
}

// ExpediteUndelivered makes the order.undelivered alerts of orders due at
// now, unless they fired already or are leased.
func (s *Store) ExpediteUndelivered(ctx context.Context, now time.Time, orderNos []string) error {
	if len(orderNos) == 0 {
		return nil
	}
	q, args, err := sqlx.In(`UPDATE alerts SET due_ms = ?
		WHERE type = 'order.undelivered' AND fired_ms IS NULL AND due_ms > ? AND order_no IN (?)`,
		now.UnixMilli(), now.UnixMilli(), orderNos)
	if err != nil {
		return fmt.Errorf("expedite alerts: %w", err)
	}
	if _, err := s.w.ExecContext(ctx, s.w.Rebind(q), args...); err != nil {
		return fmt.Errorf("expedite alerts: %w", err)
	}
	return nil
}

// AlertDone records the successful attempt of a claimed alert. It returns
// false when the lease was lost (another replica took the alert over), in
// which case nothing is written.
func (s *Store) AlertDone(ctx context.Context, a Alert, token string, now time.Time) (bool, error) {
	return s.leased(ctx, "complete", s.aq.done, now.UnixMilli(), a.ID, token)
}

// AlertRetry records a failed attempt of a claimed alert and schedules the
// next one at next; a zero next gives the alert up (no more attempts).
func (s *Store) AlertRetry(ctx context.Context, a Alert, token string, next time.Time) (bool, error) {
	var due any
	if !next.IsZero() {
		due = next.UnixMilli()
	}
	return s.leased(ctx, "retry", s.aq.retry, due, a.ID, token)
}

// ReleaseAlert gives a claimed alert back unattempted, due at now.
func (s *Store) ReleaseAlert(ctx context.Context, a Alert, token string, now time.Time) (bool, error) {
	return s.leased(ctx, "release", s.aq.release, now.UnixMilli(), a.ID, token)
}

func (s *Store) leased(ctx context.Context, op, q string, args ...any) (bool, error) {
	res, err := s.w.ExecContext(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("%s alert: %w", op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("%s alert: %w", op, err)
	}
	return n == 1, nil
}

// OrderAlerts returns the alerts that fired for an order, oldest first.
func (s *Store) OrderAlerts(ctx context.Context, orderNo string) ([]wire.Alert, error) {
	var rows []struct {
		Type      string        `db:"type"`
		FiredMS   int64         `db:"fired_ms"`
		Attempts  int           `db:"attempts"`
		Completed sql.NullInt64 `db:"completed_ms"`
	}
	if err := s.r.SelectContext(ctx, &rows, s.aq.forOrder, orderNo); err != nil {
		return nil, fmt.Errorf("alerts of %s: %w", orderNo, err)
	}
	out := make([]wire.Alert, len(rows))
	for i, r := range rows {
		out[i] = wire.Alert{Type: r.Type, FiredAt: time.UnixMilli(r.FiredMS).UTC(), Attempts: r.Attempts}
		if r.Completed.Valid {
			t := time.UnixMilli(r.Completed.Int64).UTC()
			out[i].CompletedAt = &t
		}
	}
	return out, nil
}

// AlertsPending counts alerts that fired and wait for a 2xx (or their
// lease's end), across all replicas.
func (s *Store) AlertsPending(ctx context.Context) (int, error) {
	var n int
	if err := s.r.GetContext(ctx, &n, s.aq.pending); err != nil {
		return 0, fmt.Errorf("pending alerts: %w", err)
	}
	return n, nil
}
