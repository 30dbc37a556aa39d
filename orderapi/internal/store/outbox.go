package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"
)

// EventKey names one event.
type EventKey struct {
	MerchantID string
	Seq        uint64
}

// markBatch bounds the rows one UPDATE marks published.
const markBatch = 200

// pgMarkPublished takes the keys as two arrays, so its text is the same for
// any number of keys: pgx prepares it once per connection, where a VALUES
// list of each new length was a statement of its own to parse and plan.
// Each key is one index lookup.
const pgMarkPublished = `UPDATE events e SET published = TRUE
	FROM unnest($1::text[], $2::bigint[]) AS k(merchant_id, seq)
	WHERE e.merchant_id = k.merchant_id AND e.seq = k.seq AND NOT e.published`

// MarkPublished records that Redis has these events.
func (s *Store) MarkPublished(ctx context.Context, keys []EventKey) error {
	for len(keys) > 0 {
		n := min(len(keys), markBatch)
		if err := s.markPublished(ctx, s.w, keys[:n]); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

func (s *Store) markPublished(ctx context.Context, db sqlx.ExecerContext, keys []EventKey) error {
	if len(keys) == 0 {
		return nil
	}
	if s.dialect == Postgres {
		merchants, seqs := make([]string, len(keys)), make([]int64, len(keys))
		for i, k := range keys {
			merchants[i], seqs[i] = k.MerchantID, int64(k.Seq)
		}
		if _, err := db.ExecContext(ctx, pgMarkPublished, merchants, seqs); err != nil {
			return fmt.Errorf("mark %d events published: %w", len(keys), err)
		}
		return nil
	}
	// SQLite: row values, (merchant_id, seq) IN (VALUES ...).
	var b strings.Builder
	b.WriteString(`UPDATE events SET published = TRUE WHERE (merchant_id, seq) IN (VALUES `)
	args := make([]any, 0, 2*len(keys))
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(CAST(? AS TEXT), CAST(? AS BIGINT))")
		args = append(args, k.MerchantID, int64(k.Seq))
	}
	b.WriteString(`) AND NOT published`)
	if _, err := db.ExecContext(ctx, s.w.Rebind(b.String()), args...); err != nil {
		return fmt.Errorf("mark %d events published: %w", len(keys), err)
	}
	return nil
}

// PublishFunc publishes events (one merchant's, in seq order) and returns
// how many of them, from the first, it published; it stops at the first
// failure so that a merchant's events reach Redis in seq order.
type PublishFunc func(ctx context.Context, events []Event) int

// Relay hands unpublished events created at or before cutoffMS (Unix ms) to
// publish, merchant by merchant in seq order, at most limit per merchant and
// pass, and marks what publish took as published. It returns how many
// events were published.
//
// On PostgreSQL each merchant is relayed in its own transaction holding its
// rows FOR UPDATE SKIP LOCKED and a per-merchant advisory lock, so replicas
// relaying at once never publish the same row twice nor a merchant's rows
// out of order. SQLite has a single relay (one process owns the file); it
// publishes outside any transaction so the writer is never held during a
// Redis round trip.
func (s *Store) Relay(ctx context.Context, cutoffMS int64, limit int, publish PublishFunc) (int, error) {
	var merchants []string
	if err := s.r.SelectContext(ctx, &merchants, s.q.unpublishedMerchants, cutoffMS, 100); err != nil {
		return 0, fmt.Errorf("relay: find unpublished: %w", err)
	}
	total := 0
	for _, m := range merchants {
		var n int
		var err error
		if s.dialect == Postgres {
			n, err = s.relayLocked(ctx, m, cutoffMS, limit, publish)
		} else {
			n, err = s.relayMerchant(ctx, s.r, s.w, m, cutoffMS, limit, publish)
		}
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (s *Store) relayLocked(ctx context.Context, merchant string, cutoffMS int64, limit int, publish PublishFunc) (int, error) {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("relay %s: begin: %w", merchant, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	var locked bool
	if err := tx.GetContext(ctx, &locked, s.q.relayLock, merchant); err != nil {
		return 0, fmt.Errorf("relay %s: lock: %w", merchant, err)
	}
	if !locked {
		return 0, nil // another replica relays this merchant now
	}
	n, err := s.relayMerchant(ctx, tx, tx, merchant, cutoffMS, limit, publish)
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("relay %s: commit: %w", merchant, err)
	}
	return n, nil
}

type queryer interface {
	sqlx.QueryerContext
	SelectContext(ctx context.Context, dest any, query string, args ...any) error
}

func (s *Store) relayMerchant(ctx context.Context, r queryer, w sqlx.ExecerContext, merchant string,
	cutoffMS int64, limit int, publish PublishFunc) (int, error) {
	query := s.q.unpublished
	if s.dialect == Postgres {
		query = s.q.unpublishedLocked
	}
	var evs []Event
	if err := r.SelectContext(ctx, &evs, query, merchant, limit); err != nil {
		return 0, fmt.Errorf("relay %s: read: %w", merchant, err)
	}
	// Only the prefix old enough: a younger row may still be on its way
	// through the fast path, and the rows after it must wait for it.
	for i, ev := range evs {
		if ev.CreatedMS > cutoffMS {
			evs = evs[:i]
			break
		}
	}
	if len(evs) == 0 {
		return 0, nil
	}
	n := publish(ctx, evs)
	keys := make([]EventKey, n)
	for i, ev := range evs[:n] {
		keys[i] = EventKey{MerchantID: ev.MerchantID, Seq: ev.Seq}
	}
	if err := s.markPublished(ctx, w, keys); err != nil {
		return 0, err
	}
	return n, nil
}

// Prune deletes published events created before cutoffMS (Unix ms) and
// returns how many. Unpublished events are kept however old: the relay
// still owes them to Redis.
func (s *Store) Prune(ctx context.Context, cutoffMS int64) (int64, error) {
	res, err := s.w.ExecContext(ctx, s.q.prune, cutoffMS)
	if err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	return n, nil
}

// Backlog counts events committed but not yet published: what the outbox
// relay still has to deliver. The partial index on unpublished events keeps
// it cheap while the backlog is small, which is the normal state.
func (s *Store) Backlog(ctx context.Context) (int64, error) {
	var n int64
	if err := s.r.GetContext(ctx, &n, "SELECT count(*) FROM events WHERE NOT published"); err != nil {
		return 0, fmt.Errorf("outbox backlog: %w", err)
	}
	return n, nil
}
