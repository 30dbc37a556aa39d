// Package store keeps orders, merchants and the merchant event log (the
// outbox) in SQL: PostgreSQL through pgx, or SQLite through modernc, behind
// one API. Every statement is written once with ? placeholders and rebound
// for the dialect; only the schema (migrations/<dialect>) and the relay's
// locking differ.
//
// The invariant it guards (ARCHITECTURE.md "How an order travels" 1): an order, the
// bump of its merchant's seq and pending, and the event row carrying that seq
// are committed together or not at all.
//
// A Store is safe for concurrent use.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/jmoiron/sqlx"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"orderpush/pkg/wire"
)

// Dialect names a supported database.
type Dialect string

// Supported dialects.
const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

//go:embed migrations
var migrations embed.FS

// Errors callers branch on.
var (
	// ErrNotFound means no such order.
	ErrNotFound = errors.New("not found")
	// ErrUnknownCursor means a paging cursor names no order of the merchant.
	ErrUnknownCursor = errors.New("unknown cursor")
)

// Options tune a Store. Zero values mean defaults.
type Options struct {
	// MaxConns bounds PostgreSQL connections (default 20) and SQLite
	// reader connections (default 4; SQLite always has one writer).
	MaxConns int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// NewOrderNo makes an order number (default wire.NewOrderNo). Tests
	// replace it to force collisions.
	NewOrderNo func(userID string, now time.Time) string
	// Fault, when set, runs inside every write transaction before it
	// commits, with the step just done; an error aborts the transaction.
	// It exists to inject failures in tests and is nil in production.
	Fault func(ctx context.Context, tx *sqlx.Tx, step string) error
	// Logger receives migration messages (default: discard).
	Logger *slog.Logger
	// Alerts, when set, schedules each order's attention alerts in the
	// order's transaction (see alerts.go).
	Alerts AlertSchedule
}

// Store is the SQL store.
type Store struct {
	dialect Dialect
	w       *sqlx.DB // writes; on PostgreSQL also reads
	r       *sqlx.DB // reads
	opt     Options
	q       queries
	aq      alertQueries
	group   *groupCommit // shared commits for CreateOrder
	prep    prepared     // SQLite: the order, receipts and process paths' statements, compiled once
	// publish is OnCommit's function.
	publish atomic.Pointer[PublishCommittedFunc]
}

// ParseURL splits DATABASE_URL into a dialect and a driver DSN:
// sqlite://<path> (relative, or absolute as sqlite:///abs/path) or
// postgres://... / postgresql://....
func ParseURL(raw string) (Dialect, string, error) {
	switch {
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		if _, err := url.Parse(raw); err != nil {
			return "", "", errors.New("malformed postgres URL")
		}
		return Postgres, raw, nil
	case strings.HasPrefix(raw, "sqlite://"):
		path := strings.TrimPrefix(raw, "sqlite://")
		if path == "" || strings.ContainsAny(path, "?#") || strings.Contains(path, ":memory:") {
			return "", "", errors.New("want sqlite://<file path> (no query, not :memory:)")
		}
		return SQLite, path, nil
	default:
		return "", "", errors.New("want sqlite://<path> or postgres://...")
	}
}

// sqliteDSN opens a SQLite file the way that measured safe for concurrent
// writers (a deferred transaction cannot upgrade its lock under
// busy_timeout; an immediate one can wait for it): BEGIN IMMEDIATE, WAL, a busy timeout, and times in
// SQLite's format. synchronous(FULL) makes a 201 durable across power loss.
// temp_store(MEMORY) keeps the savepoint journal of each order of a group
// (groupCommit) in memory: as a temporary file it cost write syscalls per
// order, 6% of the order API's CPU, for pages a crash discards anyway.
func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
		"&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_pragma=temp_store(MEMORY)" +
		"&_txlock=immediate&_time_format=sqlite"
}

// Open connects to databaseURL, applies the embedded migrations and returns
// the Store. It does not retry: the caller decides how long to wait.
func Open(ctx context.Context, databaseURL string, opt Options) (*Store, error) {
	dialect, dsn, err := ParseURL(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.NewOrderNo == nil {
		opt.NewOrderNo = wire.NewOrderNo
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{dialect: dialect, opt: opt}
	switch dialect {
	case Postgres:
		err = s.openPostgres(ctx, dsn)
	case SQLite:
		err = s.openSQLite(ctx, dsn)
	}
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	s.q = newQueries(s.w)
	s.aq = newAlertQueries(s.w, dialect)
	if dialect == SQLite {
		if s.prep, err = prepare(ctx, s.w, savepointOne, rollbackOne, releaseOne,
			s.q.insertOrder, s.q.bumpMerchant, s.q.setOrderSeq, s.q.insertEvent, s.aq.insert,
			s.q.merchant, s.q.ackOrders, s.q.getOrder, s.q.seenOrder, s.q.bumpSeq,
			s.q.processOrder, s.q.unprocessMerchant); err != nil {
			s.Close()
			return nil, err
		}
	}
	switch {
	case dialect == SQLite:
		s.group = newGroupCommit(s, 1, s.savepointGroup) // one writer anyway
	case opt.Fault != nil:
		// Fault hooks need a *sqlx.Tx and a step per statement.
		s.group = newGroupCommit(s, pgCommitters, s.savepointGroup)
	default:
		s.group = newGroupCommit(s, pgCommitters, s.pgGroup)
	}
	return s, nil
}

func (s *Store) openPostgres(ctx context.Context, dsn string) error {
	db, err := sqlx.Open("pgx", dsn)
	if err != nil {
		return fmt.Errorf("open postgres: %w", err)
	}
	n := s.opt.MaxConns
	if n <= 0 {
		n = 20
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return fmt.Errorf("connect postgres: %w", err)
	}
	s.w, s.r = db, db
	return nil
}

// openSQLite opens one writer connection and a small reader pool. With one
// writer, Go's pool queues writers instead of SQLite's busy handler, which
// sleeps and retries; WAL lets readers run beside it.
func (s *Store) openSQLite(ctx context.Context, path string) error {
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("sqlite directory: %w", err)
		}
	}
	w, err := sqlx.Open("sqlite", sqliteDSN(path))
	if err != nil {
		return fmt.Errorf("open sqlite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	r, err := sqlx.Open("sqlite", sqliteDSN(path))
	if err != nil {
		w.Close()
		return fmt.Errorf("open sqlite: %w", err)
	}
	n := s.opt.MaxConns
	if n <= 0 {
		n = 4
	}
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	s.w, s.r = w, r
	return nil
}

func (s *Store) migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrations, "migrations/"+string(s.dialect))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	var opts []goose.ProviderOption
	dialect := goose.DialectSQLite3
	if s.dialect == Postgres {
		dialect = goose.DialectPostgres
		// Replicas starting together must not migrate twice.
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	// A database may have a later version applied before an earlier one
	// is added (versions are numbered when work starts, not when it
	// lands); each migration stands alone, so apply what is missing.
	opts = append(opts, goose.WithDisableGlobalRegistry(true), goose.WithSlog(s.opt.Logger),
		goose.WithAllowOutofOrder(true))
	p, err := goose.NewProvider(dialect, s.w.DB, sub, opts...)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", s.dialect, err)
	}
	return nil
}

// PublishCommittedFunc publishes the events just committed by CreateOrder
// or ApplyReceipts, before they return. It cannot fail: what it does not
// publish stays unpublished in the event log for the outbox relay. It must
// return within its own deadline, as every order of its groups waits for
// it.
type PublishCommittedFunc func(ctx context.Context, evs []Event)

// OnCommit sets the function that publishes each group commit's events.
// Until it is set, committed events are left to the relay.
func (s *Store) OnCommit(publish PublishCommittedFunc) { s.publish.Store(&publish) }

// publishCommitted hands committed events to the OnCommit function.
func (s *Store) publishCommitted(evs []Event) {
	if publish := s.publish.Load(); publish != nil && len(evs) > 0 {
		(*publish)(context.Background(), evs)
	}
}

// Dialect reports the database in use.
func (s *Store) Dialect() Dialect { return s.dialect }

// Ping checks that the database answers. It uses the reader pool: SQLite's
// single writer may be busy with a transaction for a while.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s: %w", s.dialect, err)
	}
	return nil
}

// Close finishes the commit in progress and closes every connection.
func (s *Store) Close() error {
	if s.group != nil {
		s.group.close()
	}
	err := errors.Join(s.prep.close(), s.w.Close())
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	return err
}

// inTx runs fn in a write transaction and commits it. Any error, including
// one from the Fault hook, rolls everything back.
func (s *Store) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := s.fault(ctx, tx, "commit"); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (s *Store) fault(ctx context.Context, tx *sqlx.Tx, step string) error {
	if s.opt.Fault == nil {
		return nil
	}
	return s.opt.Fault(ctx, tx, step)
}
