package server

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"orderpush/gateway/internal/hub"
)

func env(kv ...string) func(string) string {
	m := map[string]string{"JWT_SECRET": string(testSecret)}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestLoadDefaults(t *testing.T) {
	c, log, err := Load(env(), io.Discard)
	if err != nil || log == nil {
		t.Fatal(err)
	}
	if c.Addr != ":8080" || c.SendQueueSize != 256 ||
		c.GapWait != 100*time.Millisecond || c.ReplayMax != 10000 || c.DrainSpread != 2*time.Second ||
		c.PprofAddr != "" || c.GCPercent != DefaultGCPercent || c.OrderAPIURL != "" || len(c.AllowedOrigins) != 0 || c.Redis.Single == nil || c.DashboardAPIURL != "" ||
		c.Redis.Single.Addr != "127.0.0.1:6379" || !validNodeID(c.NodeID) {
		t.Fatalf("defaults %+v", c)
	}
	c2, _, _ := Load(env(), io.Discard)
	if c2.NodeID == c.NodeID {
		t.Fatal("default node ids repeat")
	}
	c, _, err = Load(env("GATEWAY_ADDR", "127.0.0.1:9", "NODE_ID", "gw-1.a_b", "ALLOWED_ORIGINS", " https://*.Shop.example , dash.example:8443,",
		"ORDERAPI_URL", "http://orderapi:8090", "REDIS_URL", "redis-cluster://10.0.0.1:7000?addr=10.0.0.2:7000",
		"PPROF_ADDR", "127.0.0.1:6060", "SEND_QUEUE_SIZE", "16", "DASHBOARD_API_URL", "https://API.shop.example/", "GOGC", "50"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeID != "gw-1.a_b" || strings.Join(c.AllowedOrigins, ",") != "https://*.shop.example,dash.example:8443" ||
		c.Redis.Cluster == nil || c.SendQueueSize != 16 || c.PprofAddr != "127.0.0.1:6060" || c.GCPercent != 50 || c.DashboardAPIURL != "https://api.shop.example" {
		t.Fatalf("parsed %+v", c)
	}
}

func TestLoadNamesEveryBadSetting(t *testing.T) {
	_, _, err := Load(env("JWT_SECRET", "", "NODE_ID", "a b", "SEND_QUEUE_SIZE", "0", "GAP_WAIT", "1y",
		"ALLOWED_ORIGINS", "https://[", "ORDERAPI_URL", "orderapi:8090", "LOG_LEVEL", "loud", "DASHBOARD_API_URL", "https://evil.example/?x", "GOGC", "off"), io.Discard)
	if err == nil {
		t.Fatal("accepted")
	}
	line := OneLine(err)
	for _, name := range []string{"JWT_SECRET", "NODE_ID", "SEND_QUEUE_SIZE", "GAP_WAIT", "ALLOWED_ORIGINS", "ORDERAPI_URL", "LOG_LEVEL", "DASHBOARD_API_URL", "GOGC"} {
		if !strings.Contains(line, name) {
			t.Fatalf("%q does not name %s", line, name)
		}
	}
	if strings.Contains(line, "\n") {
		t.Fatalf("not one line: %q", line)
	}
}

func TestOriginAllowed(t *testing.T) {
	pats, err := parseOrigins("https://*.shop.example,dash.example:8443,*.local")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"https://a.shop.example", true},
		{"HTTPS://A.SHOP.EXAMPLE", true},
		{"http://a.shop.example", false},
		{"https://shop.example", false},
		{"https://a.b.shop.example", true},
		{"https://dash.example:8443", true},
		{"http://dash.example:8443", true},
		{"https://dash.example", false},
		{"http://x.local", true},
		{"null", false},
		{"https://evil.example/https://a.shop.example", false},
	} {
		if got := originAllowed(pats, tc.origin); got != tc.ok {
			t.Fatalf("%q: %v", tc.origin, got)
		}
	}
	if !originAllowed(nil, "https://anything") {
		t.Fatal("no patterns must allow any origin")
	}
	for _, bad := range []string{"https://[", "a/b"} {
		if _, err := parseOrigins(bad); err == nil {
			t.Fatalf("accepted %q", bad)
		}
	}
}

// FuzzOriginAllowed: never panics; no patterns allow everything; an origin
// accepted by a host pattern keeps being accepted by "*".
func FuzzOriginAllowed(f *testing.F) {
	for _, s := range []string{"https://a.shop.example", "", "null", "http://[::1]:80", "https://x/y", "%zz"} {
		f.Add(s)
	}
	pats, _ := parseOrigins("https://*.shop.example,dash.example:8443")
	f.Fuzz(func(t *testing.T, origin string) {
		ok := originAllowed(pats, origin)
		if !originAllowed(nil, origin) {
			t.Fatal("no patterns refused")
		}
		if ok && origin != "" && !strings.Contains(strings.ToLower(origin), "shop.example") && !strings.Contains(strings.ToLower(origin), "dash.example") {
			t.Fatalf("%q accepted", origin)
		}
	})
}

func FuzzParseSince(f *testing.F) {
	for _, s := range []string{"since=0", "since=42", "since=-1", "since=", "since=1e3", "since=9223372036854775807",
		"since=9223372036854775808", "since=%2B1", "x=1", "since=1&since=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		r := httptest.NewRequest("GET", "/ws", nil)
		r.URL.RawQuery = q
		v, has := querySince(r)
		n := int64(hub.NoSince)
		if has {
			var err error
			if n, err = parseSince(v); err != nil {
				return
			}
		}
		if n < 0 && n != hub.NoSince {
			t.Fatalf("%q gave %d", q, n)
		}
		if n >= 0 && strings.TrimLeft(r.URL.Query().Get("since"), "0123456789") != "" {
			t.Fatalf("%q accepted", q)
		}
	})
}
