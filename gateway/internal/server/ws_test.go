package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/wstest"
	"orderpush/pkg/poll"
	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
)

// TestUpgradeRefusals covers every refusal before the upgrade, with the
// JSON error shape of PROTOCOL.md.
func TestUpgradeRefusals(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	g := startGW(t, url, func(c *Config) {
		c.AllowedOrigins = []string{"https://*.shop.example", "dash.example:8443"}
	})
	mid := redistest.Unique("m")
	good := merchantToken(t, mid)
	expired := mint(t, token.RoleMerchant, mid, -time.Minute)
	noExp, _ := token.MintClaims(testSecret, token.Claims{Role: token.RoleMerchant})
	wrongKey, _ := token.Mint([]byte("another-secret-0123456789abcdefghij"), token.RoleMerchant, mid, time.Hour)
	badSub, _ := token.Mint(testSecret, token.RoleMerchant, "bad id!", time.Hour)
	cases := []struct {
		name   string
		query  string
		header http.Header
		status int
		code   string
	}{
		{"no token", "", nil, 401, "unauthorized"},
		{"garbage token", "token=abc", nil, 401, "unauthorized"},
		{"expired", "token=" + expired, nil, 401, "unauthorized"},
		{"no exp", "token=" + noExp, nil, 401, "unauthorized"},
		{"wrong secret", "token=" + wrongKey, nil, 401, "unauthorized"},
		{"bad merchant id", "token=" + badSub, nil, 401, "unauthorized"},
		{"member", "token=" + mint(t, token.RoleMember, "u1", time.Hour), nil, 403, "forbidden"},
		{"service", "token=" + mint(t, token.RoleService, "svc", time.Hour), nil, 403, "forbidden"},
		{"origin refused", "token=" + good, http.Header{"Origin": {"https://evil.example"}}, 403, "origin_not_allowed"},
		{"origin scheme mismatch", "token=" + good, http.Header{"Origin": {"http://a.shop.example"}}, 403, "origin_not_allowed"},
		{"since negative", "token=" + good + "&since=-1", nil, 400, "invalid_since"},
		{"since word", "token=" + good + "&since=abc", nil, 400, "invalid_since"},
		{"since fraction", "token=" + good + "&since=1.5", nil, 400, "invalid_since"},
		{"since empty", "token=" + good + "&since=", nil, 400, "invalid_since"},
		{"since huge", "token=" + good + "&since=99999999999999999999", nil, 400, "invalid_since"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, g.URL+"/ws?"+tc.query, nil)
			for k, v := range tc.header {
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
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != tc.code || e.Error.Message == "" {
				t.Fatalf("body %s, want code %s", body, tc.code)
			}
			if strings.Contains(string(body), "eyJ") {
				t.Fatalf("error body echoes a token: %s", body)
			}
		})
	}
	// Allowed: matching origins, no Origin at all, and Bearer instead of ?token=.
	for _, h := range []http.Header{
		{"Origin": {"https://a.shop.example"}},
		{"Origin": {"http://DASH.example:8443"}},
		{},
		{"Authorization": {"Bearer " + good}},
	} {
		u := wstest.URL(g.URL, good, -1)
		if h.Get("Authorization") != "" {
			u = strings.Replace(u, "token="+good, "", 1)
		}
		c, err := wstest.Dial(context.Background(), u, h)
		if err != nil {
			t.Fatalf("headers %v: %v", h, err)
		}
		if _, err := c.WaitEvent(5*time.Second, "hello", 1); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

// TestHelloThenLive: hello carries the current seq and orderSum, then live
// events follow in order, each frame byte for byte what was published.
func TestHelloThenLive(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	g := startGW(t, url)
	mid := redistest.Unique("m")
	p := newPublisher(t, newRedis(t, url), mid)
	p.publish(5)
	c := dial(t, g.URL, mid, -1)
	hello, err := c.WaitEvent(5*time.Second, "hello", 1)
	if err != nil {
		t.Fatal(err)
	}
	h := hello.Hello()
	if h.Seq != 5 || h.OrderSum != 5 || h.MerchantID != mid || h.Node != g.Node || h.ConnID == "" {
		t.Fatalf("hello %s", hello.Raw)
	}
	seq, sum, f := p.next()
	if _, err := p.store.Publish(context.Background(), mid, seq, sum, f); err != nil {
		t.Fatal(err)
	}
	p.publish(9)
	if err := c.WaitSeq(5*time.Second, 15); err != nil {
		t.Fatal(err)
	}
	fs := c.Frames()
	if err := wstest.CheckStream(fs, -1, false); err != nil {
		t.Fatal(err)
	}
	if string(fs[1].Raw) != string(f) {
		t.Fatalf("frame changed in transit:\n got %s\nwant %s", fs[1].Raw, f)
	}
}

// TestSinceReplayAndSeam: a socket with since gets since < seq <= hello.seq
// from history, then live events, while events keep coming during the
// replay: no duplicate and no gap at the seam.
func TestSinceReplayAndSeam(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	g := startGW(t, url)
	mid := redistest.Unique("m")
	p := newPublisher(t, newRedis(t, url), mid)
	p.publish(300)
	// Another socket keeps the topic subscribed, so live frames race the replay.
	other := dial(t, g.URL, mid, -1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.publish(200)
	}()
	c := dial(t, g.URL, mid, 10)
	<-done
	if err := c.WaitSeq(10*time.Second, 500); err != nil {
		t.Fatal(err)
	}
	if err := wstest.CheckStream(c.Frames(), 10, false); err != nil {
		t.Fatal(err)
	}
	if err := other.WaitSeq(10*time.Second, 500); err != nil {
		t.Fatal(err)
	}
	if err := wstest.CheckStream(other.Frames(), -1, false); err != nil {
		t.Fatal(err)
	}
	if n := g.metric(g.srv.m.Replays); n < 1 {
		t.Fatalf("replays metric %v", n)
	}
}

// TestSinceAheadGetsResync: PROTOCOL.md, a since above the merchant's
// current seq gets resync after hello.
func TestSinceAheadGetsResync(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	g := startGW(t, url)
	mid := redistest.Unique("m")
	newPublisher(t, newRedis(t, url), mid).publish(3)
	c := dial(t, g.URL, mid, 7)
	r, err := c.WaitEvent(5*time.Second, "resync", 1)
	if err != nil {
		t.Fatal(err)
	}
	fs := c.Frames()
	if fs[0].Event != "hello" || r.Hello().Seq != 3 || r.Hello().OrderSum != 3 {
		t.Fatalf("frames %s / %s", fs[0].Raw, r.Raw)
	}
}

// TestClientFrames: ping gets pong, anything else gets an error frame and
// the socket stays open; a frame over 64 KiB closes it with 1009.
func TestClientFrames(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	g := startGW(t, url)
	mid := redistest.Unique("m")
	c := dial(t, g.URL, mid, -1)
	ctx := context.Background()
	for _, msg := range []string{`{"event":"ping"}`, `nonsense`, `{"event":"subscribe"}`,
		`{"event":"process","data":{"orderNo":"x"}}`, `{"event":"process","data":{"orderNo":"u100000000000000000001"}}`,
		`{"event":"ack","seq":1}`, `{"event":"seen","data":{"orderNo":"u100000000000000000001"}}`, `{"event":"ping"}`} {
		if err := c.Send(ctx, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.WaitEvent(5*time.Second, "pong", 2); err != nil {
		t.Fatal(err)
	}
	var errs []string
	for _, f := range c.Frames() {
		if f.Event == "error" {
			var d struct{ Code, Message string }
			_ = json.Unmarshal(f.Data, &d)
			errs = append(errs, d.Code)
		}
	}
	// Three malformed frames, process without ORDERAPI_URL, and an ack
	// above hello's seq 0. The seen is dropped without an answer (no
	// ORDERAPI_URL), and counted.
	if strings.Join(errs, ",") != "invalid_frame,invalid_frame,invalid_frame,unavailable,invalid_field" {
		t.Fatalf("error codes %v", errs)
	}
	if n := g.metric(g.srv.m.ReceiptsForwarded.WithLabelValues(metrics.ReceiptSeen, "dropped")); n != 1 {
		t.Fatalf("dropped seen counted %v, want 1", n)
	}
	if err := c.Send(ctx, []byte(`{"event":"ping","pad":"`+strings.Repeat("x", 70<<10)+`"}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitClosed(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := c.CloseStatus(); got != websocket.StatusMessageTooBig {
		t.Fatalf("close %v, want 1009", got)
	}
}

// TestTokenExpiryCloses1008: the socket closes with 1008 when its token
// expires.
func TestTokenExpiryCloses1008(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	g := startGW(t, url)
	mid := redistest.Unique("m")
	tok := mint(t, token.RoleMerchant, mid, 3*time.Second)
	c, err := wstest.Dial(context.Background(), wstest.URL(g.URL, tok, -1), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if err := c.WaitClosed(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := c.CloseStatus(); got != websocket.StatusPolicyViolation {
		t.Fatalf("close %v after %s, want 1008", got, time.Since(start))
	}
}

// TestBatchMode: with ?batch=1 every message holds complete frames
// separated by '\n', in order.
func TestBatchMode(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	g := startGW(t, url)
	mid := redistest.Unique("m")
	p := newPublisher(t, newRedis(t, url), mid)
	p.publish(400)
	c := dial(t, g.URL, mid, 0, "batch", "1")
	p.publish(100)
	if err := c.WaitSeq(10*time.Second, 500); err != nil {
		t.Fatal(err)
	}
	if err := wstest.CheckStream(c.Frames(), 0, false); err != nil {
		t.Fatal(err)
	}
}

// TestDrainAnswers503: while a replica drains, /readyz is 503 and a new
// upgrade gets 503 unavailable; open sockets get 1001 spread over the
// drain, and their presence is gone.
func TestDrainAnswers503(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	g := startGW(t, url, func(c *Config) { c.DrainSpread = 2 * time.Second })
	mid := redistest.Unique("m")
	var socks []*wstest.Conn
	for range 4 {
		c := dial(t, g.URL, mid, -1)
		if _, err := c.WaitEvent(5*time.Second, "hello", 1); err != nil {
			t.Fatal(err)
		}
		socks = append(socks, c)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		g.Stop()
	}()
	poll.Within(t, 5*time.Second, "the drain to start", func() error {
		if !g.srv.Draining() {
			return errNotYet
		}
		return nil
	})
	resp, err := http.Get(g.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"draining"`) {
		t.Fatalf("readyz while draining: %d %s", resp.StatusCode, body)
	}
	_, err = wstest.Dial(context.Background(), wstest.URL(g.URL, merchantToken(t, mid), -1), nil)
	var de *wstest.DialError
	if !errors.As(err, &de) || de.Status != http.StatusServiceUnavailable {
		t.Fatalf("upgrade while draining: %v", err)
	}
	for _, c := range socks {
		if err := c.WaitClosed(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		if c.CloseStatus() != websocket.StatusGoingAway {
			t.Fatalf("closed with %v", c.Err())
		}
	}
	<-stopped
}

// TestHealthMetricsAndDashboard: the operator endpoints and the embedded
// dashboard at /.
func TestHealthMetricsAndDashboard(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	g := startGW(t, url)
	c := dial(t, g.URL, redistest.Unique("m"), -1)
	if _, err := c.WaitEvent(5*time.Second, "hello", 1); err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string, string) {
		resp, err := http.Get(g.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	if code, _, body := get("/healthz"); code != 200 || !strings.Contains(body, `"ok"`) {
		t.Fatalf("healthz %d %s", code, body)
	}
	if code, _, body := get("/readyz"); code != 200 || !strings.Contains(body, `"redis":"ok"`) {
		t.Fatalf("readyz %d %s", code, body)
	}
	code, _, body := get("/metrics")
	for _, name := range []string{`gateway_connections_open{transport="ws"} 1`, "gateway_frames_sent_total", "gateway_delivery_lag_seconds_bucket",
		"gateway_resyncs_total", "gateway_slow_consumer_closes_total", "gateway_redis_reconnects_total", `gateway_connects_total{result="ok"} 1`} {
		if code != 200 || !strings.Contains(body, name) {
			t.Fatalf("metrics lack %q", name)
		}
	}
	if code, ctype, _ := get("/"); code != 200 || !strings.HasPrefix(ctype, "text/html") {
		t.Fatalf("dashboard %d %s", code, ctype)
	}
	if code, _, _ := get("/ws"); code != http.StatusUnauthorized {
		t.Fatalf("plain GET /ws without token: %d", code)
	}
}
