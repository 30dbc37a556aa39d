// Package apitest runs a real order API server in-process for tests, as
// httptest does for handlers: a fresh SQLite file or PostgreSQL database
// (pgtest), a real Redis (REDIS_URL, or a private redis-server), a loopback
// port, and helpers to mint tokens, call the API and count rows.
//
// Redis may be shared between tests, so tests must use unique merchant ids
// (redistest.Unique): the stream script ignores a seq a merchant already
// has in history.
package apitest

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"orderpush/orderapi/internal/server"
	"orderpush/orderapi/internal/store"
	"orderpush/pkg/config"
	"orderpush/pkg/pgtest"
	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
)

// Secret is the HS256 secret of every test server.
const Secret = "orderapi-test-secret-0123456789abcdef"

// Dialects are the databases every store-backed test runs on.
var Dialects = []string{"sqlite", "postgres"}

// Each runs f as a parallel subtest per dialect.
func Each(t *testing.T, f func(t *testing.T, dialect string)) {
	t.Helper()
	for _, d := range Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			f(t, d)
		})
	}
}

// DatabaseURL returns a fresh, empty database of dialect for this test.
func DatabaseURL(t testing.TB, dialect string) string {
	t.Helper()
	switch dialect {
	case "sqlite":
		return "sqlite://" + filepath.Join(t.TempDir(), "orders.db")
	case "postgres":
		return pgtest.NewDatabase(t)
	}
	t.Fatalf("apitest: unknown dialect %q", dialect)
	return ""
}

// Options select what the server runs on. Zero values mean defaults.
type Options struct {
	Dialect     string // "sqlite" (default) or "postgres"
	DatabaseURL string // an existing database (a second replica); overrides Dialect
	RedisURL    string // default: REDIS_URL or a private redis-server
	Redis       redis.UniversalClient
	Store       store.Options
	// Tweak adjusts the configuration before the server is built.
	Tweak func(*server.Config)
}

// Env is one running server.
type Env struct {
	URL         string // http://127.0.0.1:port
	DatabaseURL string
	RedisURL    string
	Registry    *prometheus.Registry
	Server      *server.Server

	db      *sql.DB
	stop    context.CancelFunc
	done    chan error
	stopped sync.Once
}

// Start builds and runs a server; it stops when the test ends.
func Start(t testing.TB, opt Options) *Env {
	t.Helper()
	if opt.DatabaseURL == "" {
		if opt.Dialect == "" {
			opt.Dialect = "sqlite"
		}
		opt.DatabaseURL = DatabaseURL(t, opt.Dialect)
	}
	if opt.RedisURL == "" {
		opt.RedisURL = redistest.SharedURL(t)
	}
	rc, err := config.ParseRedisURL(opt.RedisURL)
	if err != nil {
		t.Fatalf("apitest: redis url: %v", err)
	}
	cfg := server.Config{
		Addr: "127.0.0.1:0", DatabaseURL: opt.DatabaseURL, Redis: rc,
		JWT:            token.Config{Secret: []byte(Secret)},
		EventRetention: 168 * time.Hour, CORSOrigins: []string{"*"},
		RelayInterval: 100 * time.Millisecond, RelayGrace: 500 * time.Millisecond,
		DBConnectTimeout: 5 * time.Second, ShutdownTimeout: 5 * time.Second, DrainDelay: 1,
	}
	if opt.Tweak != nil {
		opt.Tweak(&cfg)
	}
	e := &Env{DatabaseURL: opt.DatabaseURL, RedisURL: opt.RedisURL, Registry: prometheus.NewRegistry(), done: make(chan error, 1)}
	srv, err := server.New(t.Context(), cfg, server.Deps{
		Logger: testLogger(t), Registry: e.Registry, Redis: opt.Redis, Store: opt.Store,
	})
	if err != nil {
		t.Fatalf("apitest: start server: %v", err)
	}
	e.Server, e.URL = srv, "http://"+srv.Addr()
	ctx, cancel := context.WithCancel(context.Background())
	e.stop = cancel
	go func() { e.done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Errorf("apitest: server stopped with %v", err)
		}
		if e.db != nil {
			e.db.Close()
		}
	})
	return e
}

// Stop drains the server and returns Run's result. Later calls return nil.
func (e *Env) Stop() error {
	var err error
	e.stopped.Do(func() {
		e.stop()
		err = <-e.done
	})
	return err
}

// Token mints a token valid for an hour.
func Token(t testing.TB, role, sub string) string {
	t.Helper()
	tok, err := token.Mint([]byte(Secret), role, sub, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Response is an HTTP answer with its body read.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Decode unmarshals the body into v or fails the test.
func (r Response) Decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// ErrorCode is the body's error.code, or "".
func (r Response) ErrorCode() string {
	var b struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &b)
	return b.Error.Code
}

var client = &http.Client{Timeout: 15 * time.Second}

// Do sends a request with an optional bearer token and body.
func (e *Env) Do(t testing.TB, method, path, tok, body string) Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Count returns the number of rows of from (a table, optionally followed by
// a WHERE clause), read through a connection of its own.
func (e *Env) Count(t testing.TB, from string) int {
	t.Helper()
	if e.db == nil {
		dialect, dsn, err := store.ParseURL(e.DatabaseURL)
		if err != nil {
			t.Fatal(err)
		}
		driver := "pgx"
		if dialect == store.SQLite {
			driver = "sqlite"
		}
		if e.db, err = sql.Open(driver, dsn); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := e.db.QueryRow("SELECT COUNT(*) FROM " + from).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", from, err)
	}
	return n
}

// Metric returns the sum of every series of the named metric (a counter or
// gauge) in the server's registry; 0 when it has none.
func (e *Env) Metric(t testing.TB, name string) float64 {
	t.Helper()
	mfs, err := e.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}
