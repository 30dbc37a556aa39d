package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"orderpush/pkg/config"
	"orderpush/pkg/poll"
	"orderpush/pkg/redistest"
)

// refusal is what a client sees of a refused upgrade.
type refusalSeen struct {
	status     int
	code       string
	retryAfter int
}

// tryUpgrade sends an upgrade request for merchant mid's token with extra
// headers and returns the refusal, or status 101 (the connection is then
// closed).
func tryUpgrade(t testing.TB, base, tok string, h http.Header) refusalSeen {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/ws?token="+tok, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return refusalSeen{status: resp.StatusCode}
	}
	body, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" {
		t.Fatalf("status %d, body %q: not the error shape", resp.StatusCode, body)
	}
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	return refusalSeen{status: resp.StatusCode, code: e.Error.Code, retryAfter: ra}
}

// TestConnectRateWired: one client address over CONNECT_RATE gets 429
// rate_limited with Retry-After while another address (X-Forwarded-For
// through the trusted loopback proxy) is still admitted; a forged header
// from an untrusted peer is ignored.
func TestConnectRateWired(t *testing.T) {
	t.Parallel()
	g := startGW(t, redistest.SharedURL(t), func(c *Config) {
		c.ConnectRate = config.Rate{N: 1, Per: time.Minute} // burst 2, then one a minute
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	mid := redistest.Unique("m")
	tok := merchantToken(t, mid)
	flood := http.Header{"X-Forwarded-For": {"198.51.100.1"}}
	for i := range 2 {
		if got := tryUpgrade(t, g.URL, tok, flood); got.status != 101 {
			t.Fatalf("attempt %d: %+v", i, got)
		}
	}
	got := tryUpgrade(t, g.URL, tok, flood)
	if got.status != 429 || got.code != "rate_limited" || got.retryAfter < 1 || got.retryAfter > 60 {
		t.Fatalf("over the rate: %+v, want 429 rate_limited with Retry-After 1-60", got)
	}
	if got := tryUpgrade(t, g.URL, tok, http.Header{"X-Forwarded-For": {"198.51.100.2"}}); got.status != 101 {
		t.Fatalf("another address: %+v", got)
	}
	// The same header from an untrusted peer would be ignored: with nobody
	// trusted, every request counts against 127.0.0.1 itself.
	untrusting := startGW(t, redistest.SharedURL(t), func(c *Config) {
		c.ConnectRate = config.Rate{N: 1, Per: time.Minute}
		c.TrustedProxies = nil
	})
	for i, xff := range []string{"203.0.113.1", "203.0.113.2"} {
		if got := tryUpgrade(t, untrusting.URL, tok, http.Header{"X-Forwarded-For": {xff}}); got.status != 101 {
			t.Fatalf("untrusted %d: %+v", i, got)
		}
	}
	if got := tryUpgrade(t, untrusting.URL, tok, http.Header{"X-Forwarded-For": {"203.0.113.3"}}); got.status != 429 {
		t.Fatalf("a forged X-Forwarded-For from an untrusted peer was believed: %+v", got)
	}
	if n := g.metric(g.srv.m.Connects.WithLabelValues("rate_limited")); n != 1 {
		t.Fatalf("rate_limited = %v", n)
	}
}

// TestMaxConnsWired: MAX_CONNS open sockets fill the replica (503
// unavailable with Retry-After); closing one frees its place.
func TestMaxConnsWired(t *testing.T) {
	t.Parallel()
	g := startGW(t, redistest.SharedURL(t), func(c *Config) { c.MaxConns = 2 })
	mid := redistest.Unique("m")
	a := dial(t, g.URL, mid, -1)
	dial(t, g.URL, mid, -1)
	got := tryUpgrade(t, g.URL, merchantToken(t, mid), nil)
	if got.status != 503 || got.code != "unavailable" || got.retryAfter < 1 {
		t.Fatalf("full replica: %+v, want 503 unavailable with Retry-After", got)
	}
	a.Close()
	poll.Within(t, 10*time.Second, "a free place after a close", func() error {
		if n := g.srv.admit.Open(); n != 1 {
			return fmt.Errorf("open places %d, want 1", n)
		}
		return nil
	})
	dial(t, g.URL, mid, -1)
	if n := g.metric(g.srv.m.Connects.WithLabelValues("max_conns")); n != 1 {
		t.Fatalf("max_conns = %v", n)
	}
}

// TestMerchantCapAcrossReplicas: MAX_CONNS_PER_MERCHANT counts a merchant's
// sockets on every replica; a closed socket frees its place at once; other
// merchants are unaffected.
func TestMerchantCapAcrossReplicas(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	capped := func(c *Config) { c.MaxConnsPerMerchant = 3 }
	g1, g2 := startGW(t, url, capped), startGW(t, url, capped)
	mid := redistest.Unique("m")
	first := dial(t, g1.URL, mid, -1)
	dial(t, g2.URL, mid, -1)
	dial(t, g1.URL, mid, -1)
	for _, g := range []*gw{g1, g2} {
		got := tryUpgrade(t, g.URL, merchantToken(t, mid), nil)
		if got.status != 429 || got.code != "too_many_connections" || got.retryAfter < 1 {
			t.Fatalf("4th socket: %+v, want 429 too_many_connections", got)
		}
	}
	dial(t, g2.URL, redistest.Unique("m"), -1)
	first.Close()
	poll.Within(t, 10*time.Second, "the merchant's place after a close", func() error {
		if got := tryUpgrade(t, g2.URL, merchantToken(t, mid), nil); got.status != 101 {
			return fmt.Errorf("after a close: %+v", got)
		}
		return nil
	})
}

// TestReadTimeout: ReadTimeout cuts a request whose body never finishes,
// but not an upgraded WebSocket (net/http clears the deadline on hijack).
func TestReadTimeout(t *testing.T) {
	t.Parallel()
	const rt = 500 * time.Millisecond
	g := startGW(t, redistest.SharedURL(t), func(c *Config) { c.ReadTimeout = rt })
	mid := redistest.Unique("m")
	ws := dial(t, g.URL, mid, -1)

	// A slow body: headers, then nothing.
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	_, _ = io.WriteString(conn, "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.Copy(io.Discard, bufio.NewReader(conn)) // ends when the server closes
	if d := time.Since(start); d < rt || d > 5*time.Second {
		t.Fatalf("slow body held for %v, ReadTimeout %v", d, rt)
	}

	// The socket, opened before the slow request was cut, is now older than
	// ReadTimeout and still works both ways.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ws.Send(ctx, []byte(`{"event":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.WaitEvent(5*time.Second, "pong", 1); err != nil {
		t.Fatalf("socket after ReadTimeout: %v", err)
	}
	if err := ws.WS.Ping(ctx); err != nil {
		t.Fatalf("ping after ReadTimeout: %v", err)
	}
	if ws.CloseStatus() != -1 {
		t.Fatalf("closed: %v", ws.Err())
	}
}
