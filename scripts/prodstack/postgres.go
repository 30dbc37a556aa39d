package prodstack

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	"github.com/redis/go-redis/v9"
)

// DefaultPGAdminURL is used when neither Options nor PG_ADMIN_URL name a
// server; the same default as pkg/pgtest.
const DefaultPGAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// createDatabase creates an empty database on the admin URL's server and
// returns its URL and a func that drops it.
func createDatabase(ctx context.Context, admin string) (string, func(context.Context) error, error) {
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, fmt.Errorf("PG_ADMIN_URL: %w", err)
	}
	db, err := sql.Open("pgx", admin)
	if err != nil {
		return "", nil, fmt.Errorf("postgres %s: %w", u.Redacted(), err)
	}
	defer db.Close()
	name := fmt.Sprintf("orderpush_stack_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create database on %s (is PostgreSQL running? set PG_ADMIN_URL, or use SQLite): %w", u.Redacted(), err)
	}
	drop := func(ctx context.Context) error {
		db, err := sql.Open("pgx", admin)
		if err != nil {
			return err
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		return nil
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

// waitRedis polls PING until it answers or ctx ends.
func waitRedis(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := c.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis on %s: %w (last: %v)", addr, ctx.Err(), err)
		case <-tick.C:
		}
	}
}
