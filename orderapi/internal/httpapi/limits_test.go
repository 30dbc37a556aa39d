package httpapi_test

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"orderpush/orderapi/internal/apitest"
	"orderpush/orderapi/internal/server"
	"orderpush/pkg/config"
	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
)

func orderBody(merchant string) string {
	return `{"merchantId":"` + merchant + `","date":"2022-06-22","price":36}`
}

// A member over ORDER_RATE on two order API replicas sharing one Redis: the
// budget is the member's across both, refusals are 429 rate_limited with
// Retry-After in whole seconds, and service tokens and other members are
// not held back.
func TestOrderRateAcrossReplicas(t *testing.T) {
	t.Parallel()
	redisURL := redistest.SharedURL(t)
	rate := func(c *server.Config) { c.OrderRate = config.Rate{N: 5, Per: time.Minute} } // burst 10, then one per 12 s
	a := apitest.Start(t, apitest.Options{RedisURL: redisURL, Tweak: rate})
	b := apitest.Start(t, apitest.Options{RedisURL: redisURL, Tweak: rate})
	replicas := []*apitest.Env{a, b}
	m := redistest.Unique("m")
	member := redistest.Unique("u")
	tok := apitest.Token(t, token.RoleMember, member)
	for i := range 10 {
		if r := replicas[i%2].Do(t, http.MethodPost, "/orders", tok, orderBody(m)); r.Status != http.StatusCreated {
			t.Fatalf("order %d of the burst: %d %s", i+1, r.Status, r.Body)
		}
	}
	for i, env := range replicas {
		r := env.Do(t, http.MethodPost, "/orders", tok, orderBody(m))
		if r.Status != http.StatusTooManyRequests || r.ErrorCode() != "rate_limited" {
			t.Fatalf("replica %d, order 11: %d %s; want 429 rate_limited", i, r.Status, r.Body)
		}
		secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
		if err != nil || secs < 1 || secs > 12 {
			t.Errorf("replica %d: Retry-After %q, want whole seconds in [1, 12]", i, r.Header.Get("Retry-After"))
		}
		if got := env.Metric(t, "orderapi_orders_rate_limited_total"); got != 1 {
			t.Errorf("replica %d: orderapi_orders_rate_limited_total %v, want 1", i, got)
		}
	}
	// A refused order stored nothing: 10 orders in total.
	if n := a.Count(t, "orders") + b.Count(t, "orders"); n != 10 {
		t.Errorf("%d orders stored, want 10", n)
	}
	other := apitest.Token(t, token.RoleMember, redistest.Unique("u"))
	if r := a.Do(t, http.MethodPost, "/orders", other, orderBody(m)); r.Status != http.StatusCreated {
		t.Fatalf("another member: %d %s", r.Status, r.Body)
	}
	service := apitest.Token(t, token.RoleService, member) // same sub, other role
	for i := range 15 {
		body := `{"merchantId":"` + m + `","date":"2022-06-22","price":1,"userId":"` + member + `"}`
		if r := b.Do(t, http.MethodPost, "/orders", service, body); r.Status != http.StatusCreated {
			t.Fatalf("service order %d: %d %s", i, r.Status, r.Body)
		}
	}
}

// A Redis outage does not stop orders: the limit fails open, and each
// order let through that way is counted.
func TestOrderRateFailsOpen(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	env := apitest.Start(t, apitest.Options{RedisURL: rs.URL(), Tweak: func(c *server.Config) {
		c.OrderRate = config.Rate{N: 1, Per: time.Minute}
	}})
	m := redistest.Unique("m")
	tok := apitest.Token(t, token.RoleMember, redistest.Unique("u"))
	for range 2 {
		if r := env.Do(t, http.MethodPost, "/orders", tok, orderBody(m)); r.Status != http.StatusCreated {
			t.Fatalf("burst: %d %s", r.Status, r.Body)
		}
	}
	if r := env.Do(t, http.MethodPost, "/orders", tok, orderBody(m)); r.Status != http.StatusTooManyRequests {
		t.Fatalf("over the limit with Redis up: %d %s", r.Status, r.Body)
	}
	rs.Stop()
	for i := range 5 {
		if r := env.Do(t, http.MethodPost, "/orders", tok, orderBody(m)); r.Status != http.StatusCreated {
			t.Fatalf("order %d with Redis down: %d %s", i, r.Status, r.Body)
		}
	}
	if got := env.Metric(t, "orderapi_rate_limit_fail_open_total"); got != 5 {
		t.Errorf("orderapi_rate_limit_fail_open_total %v, want 5", got)
	}
	if n := env.Count(t, "orders"); n != 7 {
		t.Errorf("%d orders stored, want 7", n)
	}
}

// MERCHANTS=registered: only merchants registered with PUT /merchants/{id}
// (service token, no body; 201 new, 200 existing) take orders; others are
// 404 not_found. MERCHANTS=open takes any valid id.
func TestMerchantRegistry(t *testing.T) {
	apitest.Each(t, func(t *testing.T, dialect string) {
		env := apitest.Start(t, apitest.Options{Dialect: dialect, Tweak: func(c *server.Config) {
			c.Merchants = server.MerchantsRegistered
		}})
		m := redistest.Unique("m")
		member := apitest.Token(t, token.RoleMember, "u1")
		service := apitest.Token(t, token.RoleService, "ops")
		if r := env.Do(t, http.MethodPost, "/orders", member, orderBody(m)); r.Status != http.StatusNotFound || r.ErrorCode() != "not_found" {
			t.Fatalf("order for an unregistered merchant: %d %s", r.Status, r.Body)
		}
		for _, tc := range []struct {
			name, path, tok, body string
			status                int
			code                  string
		}{
			{"no token", "/merchants/" + m, "", "", 401, "unauthorized"},
			{"member", "/merchants/" + m, member, "", 403, "forbidden"},
			{"the merchant itself", "/merchants/" + m, apitest.Token(t, token.RoleMerchant, m), "", 403, "forbidden"},
			{"bad id", "/merchants/no%20spaces", service, "", 400, "invalid_field"},
			{"too long id", "/merchants/" + string(bytes.Repeat([]byte("m"), 65)), service, "", 400, "invalid_field"},
			{"a body", "/merchants/" + m, service, `{"name":"x"}`, 400, "invalid_json"},
		} {
			r := env.Do(t, http.MethodPut, tc.path, tc.tok, tc.body)
			if r.Status != tc.status || r.ErrorCode() != tc.code {
				t.Errorf("PUT as %s: %d %s; want %d %s", tc.name, r.Status, r.Body, tc.status, tc.code)
			}
		}
		if n := env.Count(t, "registered_merchants"); n != 0 {
			t.Fatalf("refused registrations stored %d rows", n)
		}
		first := env.Do(t, http.MethodPut, "/merchants/"+m, service, "")
		var reg struct {
			MerchantID   string `json:"merchantId"`
			RegisteredAt string `json:"registeredAt"`
		}
		first.Decode(t, &reg)
		if first.Status != http.StatusCreated || reg.MerchantID != m || !createdAtRe.MatchString(reg.RegisteredAt) {
			t.Fatalf("first PUT: %d %s", first.Status, first.Body)
		}
		again := env.Do(t, http.MethodPut, "/merchants/"+m, service, "")
		if again.Status != http.StatusOK || !bytes.Equal(again.Body, first.Body) {
			t.Fatalf("second PUT: %d %s; want 200 %s", again.Status, again.Body, first.Body)
		}
		if r := env.Do(t, http.MethodPost, "/orders", member, orderBody(m)); r.Status != http.StatusCreated {
			t.Fatalf("order for a registered merchant: %d %s", r.Status, r.Body)
		}
		// A second replica on the same database knows the registration.
		if dialect == "postgres" {
			b := apitest.Start(t, apitest.Options{DatabaseURL: env.DatabaseURL, Tweak: func(c *server.Config) {
				c.Merchants = server.MerchantsRegistered
			}})
			if r := b.Do(t, http.MethodPost, "/orders", member, orderBody(m)); r.Status != http.StatusCreated {
				t.Fatalf("order on the second replica: %d %s", r.Status, r.Body)
			}
		}
	})
	t.Run("open", func(t *testing.T) {
		t.Parallel()
		env := apitest.Start(t, apitest.Options{})
		member := apitest.Token(t, token.RoleMember, "u1")
		if r := env.Do(t, http.MethodPost, "/orders", member, orderBody(redistest.Unique("m"))); r.Status != http.StatusCreated {
			t.Fatalf("MERCHANTS=open: %d %s", r.Status, r.Body)
		}
		// Registering still works (it takes effect when switching modes).
		if r := env.Do(t, http.MethodPut, "/merchants/"+redistest.Unique("m"), apitest.Token(t, token.RoleService, "ops"), ""); r.Status != http.StatusCreated {
			t.Fatalf("PUT in open mode: %d %s", r.Status, r.Body)
		}
	})
}

// The oracle: another merchant's (or member's) order answers exactly as a
// missing one, on every order endpoint, so order numbers cannot be probed.
func TestOtherMerchantsOrderIsNotFound(t *testing.T) {
	apitest.Each(t, func(t *testing.T, dialect string) {
		env := apitest.Start(t, apitest.Options{Dialect: dialect})
		m, other := redistest.Unique("m"), redistest.Unique("m")
		o := place(t, env, apitest.Token(t, token.RoleMember, "u1"), m, "5")
		missing := "u1" + "99999999999990000" // well-formed, never placed
		otherMerchant := apitest.Token(t, token.RoleMerchant, other)
		otherMember := apitest.Token(t, token.RoleMember, "u2")
		for _, ep := range []struct{ method, suffix string }{
			{http.MethodGet, ""},
			{http.MethodPost, "/process"},
			{http.MethodPost, "/seen"},
		} {
			for _, who := range []struct {
				name, tok string
			}{{"another merchant", otherMerchant}, {"another member", otherMember}} {
				if who.name == "another member" && ep.method == http.MethodPost {
					continue // members may not process at all: 403 whatever the order
				}
				foreign := env.Do(t, ep.method, "/orders/"+o.OrderNo+ep.suffix, who.tok, "")
				absent := env.Do(t, ep.method, "/orders/"+missing+ep.suffix, who.tok, "")
				if foreign.Status != http.StatusNotFound || foreign.ErrorCode() != "not_found" ||
					absent.Status != foreign.Status || !bytes.Equal(foreign.Body, absent.Body) {
					t.Errorf("%s %s as %s: %d %s; a missing order: %d %s", ep.method, ep.suffix, who.name,
						foreign.Status, foreign.Body, absent.Status, absent.Body)
				}
			}
		}
		// Nothing changed: the order is still pending and unseen.
		if r := env.Do(t, http.MethodGet, "/orders/"+o.OrderNo, apitest.Token(t, token.RoleMerchant, m), ""); !bytes.Contains(r.Body, []byte(`"status":"pending"`)) ||
			!bytes.Contains(r.Body, []byte(`"seenAt":null`)) {
			t.Fatalf("order after foreign process: %s", r.Body)
		}
	})
}

// PPROF_ADDR serves net/http/pprof on its own listener.
func TestPprof(t *testing.T) {
	t.Parallel()
	env := apitest.Start(t, apitest.Options{Tweak: func(c *server.Config) { c.PprofAddr = "127.0.0.1:0" }})
	addr := env.Server.PprofAddr()
	if addr == "" {
		t.Fatal("no pprof listener")
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || len(b) == 0 {
		t.Fatalf("pprof: %d %s", resp.StatusCode, b)
	}
	// The API port does not serve it.
	if r := env.Do(t, http.MethodGet, "/debug/pprof/cmdline", "", ""); r.Status != http.StatusNotFound {
		t.Fatalf("pprof on the API port: %d", r.Status)
	}
	if apitest.Start(t, apitest.Options{}).Server.PprofAddr() != "" {
		t.Fatal("pprof listening without PPROF_ADDR")
	}
}
