package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// Savepoint statements of a group's orders (groupCommit).
const (
	savepointOne = "SAVEPOINT one_order"
	rollbackOne  = "ROLLBACK TO one_order"
	releaseOne   = "RELEASE one_order"
)

// prepared holds the statements every order and every receipt run on
// SQLite's writer, compiled once. modernc's driver compiles a statement for
// each call otherwise, and that SQL parsing was 18% of the order API's CPU
// under POST /orders on SQLite, and 18% again with acks and seen receipts.
// A transaction borrows them with StmtxContext, which reuses the compiled
// statement of the writer connection (the only one). PostgreSQL needs none
// of this: pgx caches its statements itself.
type prepared map[string]*sqlx.Stmt

func prepare(ctx context.Context, db *sqlx.DB, queries ...string) (prepared, error) {
	p := prepared{}
	for _, q := range queries {
		if q == "" || p[q] != nil {
			continue
		}
		st, err := db.PreparexContext(ctx, q)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("prepare %q: %w", q, err), p.close())
		}
		p[q] = st
	}
	return p, nil
}

func (p prepared) close() error {
	var errs []error
	for _, st := range p {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}

// txExec runs query in tx, on its compiled statement when there is one.
func (s *Store) txExec(ctx context.Context, tx *sqlx.Tx, query string, args ...any) (sql.Result, error) {
	if st := s.prep[query]; st != nil {
		return tx.StmtxContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

// txGet scans query's single row in tx into dest, on its compiled statement
// when there is one.
func (s *Store) txGet(ctx context.Context, tx *sqlx.Tx, dest any, query string, args ...any) error {
	if st := s.prep[query]; st != nil {
		return tx.StmtxContext(ctx, st).GetContext(ctx, dest, args...)
	}
	return tx.GetContext(ctx, dest, query, args...)
}

// txSelect scans query's rows in tx into dest, on its compiled statement
// when there is one.
func (s *Store) txSelect(ctx context.Context, tx *sqlx.Tx, dest any, query string, args ...any) error {
	if st := s.prep[query]; st != nil {
		return tx.StmtxContext(ctx, st).SelectContext(ctx, dest, args...)
	}
	return tx.SelectContext(ctx, dest, query, args...)
}
