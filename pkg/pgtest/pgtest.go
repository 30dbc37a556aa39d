// Package pgtest creates a private PostgreSQL database for one test and drops
// it afterwards. The server is found through PG_ADMIN_URL (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable); the test
// runner starts one when none answers. A missing server fails the test.
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
)

// DefaultAdminURL is used when PG_ADMIN_URL is unset.
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

var seq atomic.Int64

// NewDatabase creates an empty database and returns its postgres:// URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin := os.Getenv("PG_ADMIN_URL")
	if admin == "" {
		admin = DefaultAdminURL
	}
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatalf("pgtest: open %s: %v", redact(admin), err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	name := fmt.Sprintf("orderpush_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, seq.Add(1))
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database on %s (is PostgreSQL running? the README's test command starts it): %v", redact(admin), err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", admin)
		if err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("pgtest: PG_ADMIN_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "PG_ADMIN_URL"
	}
	return u.Redacted()
}
