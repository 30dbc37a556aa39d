package server_test

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"orderpush/orderapi/internal/apitest"
	"orderpush/orderapi/internal/server"
	"orderpush/orderapi/internal/store"
	"orderpush/pkg/pgtest"
	"orderpush/pkg/poll"
	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
)

const body = `{"merchantId":"%s","date":"2022-06-22","price":36}`

func orderBody(m string) string { return strings.Replace(body, "%s", m, 1) }

// summary reads a merchant's seq and orderSum through the API.
func summary(t *testing.T, env *apitest.Env, m string) (seq uint64, sum int64) {
	t.Helper()
	var s struct {
		Seq      uint64 `json:"seq"`
		OrderSum int64  `json:"orderSum"`
	}
	r := env.Do(t, "GET", "/merchants/"+m+"/summary", apitest.Token(t, token.RoleService, "ops"), "")
	if r.Status != 200 {
		t.Fatalf("summary: %d %s", r.Status, r.Body)
	}
	r.Decode(t, &s)
	return s.Seq, s.OrderSum
}

// A database that fails in the middle of an order's transaction gives 503
// unavailable and leaves nothing behind: no order, no seq or pending bump,
// no event. On PostgreSQL the failure is real (the transaction's own
// backend is terminated); on SQLite it is injected.
func TestDatabaseFailsMidTransaction(t *testing.T) {
	apitest.Each(t, func(t *testing.T, dialect string) {
		var armed atomic.Bool
		fault := func(ctx context.Context, tx *sqlx.Tx, step string) error {
			if step != "merchant" || !armed.CompareAndSwap(true, false) {
				return nil
			}
			if dialect == "postgres" {
				_, err := tx.ExecContext(ctx, "SELECT pg_terminate_backend(pg_backend_pid())")
				return err // whatever it says, the connection is gone
			}
			return errors.New("injected: disk I/O error")
		}
		env := apitest.Start(t, apitest.Options{Dialect: dialect, Store: store.Options{Fault: fault}})
		m := redistest.Unique("m")
		member := apitest.Token(t, token.RoleMember, "u1")
		for range 2 {
			if r := env.Do(t, "POST", "/orders", member, orderBody(m)); r.Status != 201 {
				t.Fatalf("POST: %d %s", r.Status, r.Body)
			}
		}
		armed.Store(true)
		if r := env.Do(t, "POST", "/orders", member, orderBody(m)); r.Status != 503 || r.ErrorCode() != "unavailable" {
			t.Fatalf("POST with the database failing: %d %s; want 503 unavailable", r.Status, r.Body)
		}
		if n, e := env.Count(t, "orders"), env.Count(t, "events"); n != 2 || e != 2 {
			t.Fatalf("%d orders, %d events after the failure; want 2, 2", n, e)
		}
		if seq, sum := summary(t, env, m); seq != 2 || sum != 2 {
			t.Fatalf("seq %d orderSum %d after the failure; want 2, 2", seq, sum)
		}
		if r := env.Do(t, "POST", "/orders", member, orderBody(m)); r.Status != 201 {
			t.Fatalf("POST after the failure: %d %s", r.Status, r.Body)
		}
		if seq, sum := summary(t, env, m); seq != 3 || sum != 3 {
			t.Fatalf("seq %d orderSum %d; want 3, 3 (no gap)", seq, sum)
		}
	})
}

// PostgreSQL refusing every connection: requests get 503, readiness fails,
// nothing is written; when it accepts connections again, so does the API,
// with no gap in seq.
func TestDatabaseDown(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	admin := os.Getenv("PG_ADMIN_URL")
	if admin == "" {
		admin = pgtest.DefaultAdminURL
	}
	adb, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adb.Close() }) // after the cleanup below, which needs it
	setAllow := func(allow bool) {
		t.Helper()
		if _, err := adb.Exec("ALTER DATABASE " + name + " ALLOW_CONNECTIONS " + map[bool]string{true: "true", false: "false"}[allow]); err != nil {
			t.Fatal(err)
		}
		if !allow {
			if _, err := adb.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(func() { setAllow(true) })

	env := apitest.Start(t, apitest.Options{DatabaseURL: dbURL})
	m := redistest.Unique("m")
	member := apitest.Token(t, token.RoleMember, "u1")
	merchant := apitest.Token(t, token.RoleMerchant, m)
	first := env.Do(t, "POST", "/orders", member, orderBody(m))
	if first.Status != 201 {
		t.Fatalf("POST: %d %s", first.Status, first.Body)
	}
	var o struct{ OrderNo string }
	first.Decode(t, &o)

	setAllow(false)
	for _, r := range []struct{ method, path, tok, body string }{
		{"POST", "/orders", member, orderBody(m)},
		{"GET", "/orders/" + o.OrderNo, member, ""},
		{"POST", "/orders/" + o.OrderNo + "/process", merchant, ""},
		{"GET", "/merchants/" + m + "/orders", merchant, ""},
		{"GET", "/merchants/" + m + "/summary", merchant, ""},
		{"GET", "/merchants/" + m + "/events", merchant, ""},
	} {
		if resp := env.Do(t, r.method, r.path, r.tok, r.body); resp.Status != 503 || resp.ErrorCode() != "unavailable" {
			t.Errorf("%s %s with the database down: %d %s; want 503 unavailable", r.method, r.path, resp.Status, resp.Body)
		}
	}
	if r := env.Do(t, "GET", "/readyz", "", ""); r.Status != 503 || !strings.Contains(string(r.Body), `"redis":"ok"`) ||
		strings.Contains(string(r.Body), `"database":"ok"`) {
		t.Errorf("readyz with the database down: %d %s", r.Status, r.Body)
	}

	setAllow(true)
	poll.TrueWithin(t, 10*time.Second, "readiness after the database returns", func() bool {
		return env.Do(t, "GET", "/readyz", "", "").Status == 200
	})
	if r := env.Do(t, "POST", "/orders", member, orderBody(m)); r.Status != 201 {
		t.Fatalf("POST after the outage: %d %s", r.Status, r.Body)
	}
	if n := env.Count(t, "orders"); n != 2 {
		t.Errorf("%d orders; want 2 (nothing written during the outage)", n)
	}
	if seq, sum := summary(t, env, m); seq != 2 || sum != 2 {
		t.Errorf("seq %d orderSum %d; want 2, 2", seq, sum)
	}
}

// Draining: readiness and new API requests answer 503 during the drain
// delay, then the listener closes, a request in flight still completes, and
// Run returns nil.
func TestDrain(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var armed atomic.Bool
	fault := func(_ context.Context, _ *sqlx.Tx, step string) error {
		if step == "commit" && armed.CompareAndSwap(true, false) {
			close(entered)
			<-release
		}
		return nil
	}
	env := apitest.Start(t, apitest.Options{Store: store.Options{Fault: fault},
		Tweak: func(c *server.Config) { c.DrainDelay = 2 * time.Second }})
	m := redistest.Unique("m")
	member := apitest.Token(t, token.RoleMember, "u1")
	armed.Store(true)
	inflight := make(chan int)
	go func() {
		inflight <- env.Do(t, "POST", "/orders", member, orderBody(m)).Status
	}()
	<-entered
	stopped := make(chan error)
	go func() { stopped <- env.Stop() }()
	poll.TrueWithin(t, 5*time.Second, "readyz 503 while draining", func() bool {
		r := env.Do(t, "GET", "/readyz", "", "")
		return r.Status == 503 && strings.Contains(string(r.Body), `"draining"`)
	})
	if r := env.Do(t, "POST", "/orders", member, orderBody(m)); r.Status != 503 || r.ErrorCode() != "unavailable" {
		t.Errorf("new request while draining: %d %s; want 503 unavailable", r.Status, r.Body)
	}
	addr := strings.TrimPrefix(env.URL, "http://")
	poll.TrueWithin(t, 5*time.Second, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	if status := <-inflight; status != 201 {
		t.Errorf("in-flight request: %d; want 201", status)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s")
	}
	if n := env.Count(t, "orders"); n != 1 {
		t.Fatalf("%d orders; want the in-flight one", n)
	}
}
