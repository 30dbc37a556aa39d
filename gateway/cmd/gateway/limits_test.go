package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"orderpush/gateway/internal/wstest"
	"orderpush/pkg/redistest"
	"orderpush/pkg/stream/publish"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// silentDial opens a merchant socket and then never reads or answers
// anything: a peer that stopped reading, or vanished.
func silentDial(t *testing.T, base, mid string) net.Conn {
	t.Helper()
	tok, err := token.Mint([]byte(secret), token.RoleMerchant, mid, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(base, "http://")
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	req := "GET /ws?token=" + tok + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return c
}

// metric reads one unlabelled counter from the process's /metrics.
func metric(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// TestDeadPeerLeavesPresence (issue 9): a peer that stops reading and
// answering pings leaves presence within PING_INTERVAL + PING_TIMEOUT +
// 1 s; a healthy socket of the same merchant under the same settings stays.
func TestDeadPeerLeavesPresence(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	const interval, timeout = time.Second, time.Second
	p := start(t, url, "PING_INTERVAL=1s", "PING_TIMEOUT=1s")
	mid := redistest.Unique("m")
	healthy := sock(t, p.url, mid)
	silentDial(t, p.url, mid)
	connected := time.Now()
	if n := online(t, url, mid); n != 2 {
		t.Fatalf("online %d, want 2", n)
	}
	for online(t, url, mid) != 1 {
		if time.Since(connected) > interval+timeout+time.Second {
			t.Fatalf("the silent peer is still in presence %s after it connected", time.Since(connected))
		}
		time.Sleep(20 * time.Millisecond) // poll interval, bounded above
	}
	left := time.Since(connected)
	// The healthy socket answers every ping: it outlives several rounds.
	select {
	case <-healthy.Done():
		t.Fatalf("healthy socket closed: %v", healthy.Err())
	case <-time.After(3 * (interval + timeout)):
	}
	if n := online(t, url, mid); n != 1 {
		t.Fatalf("online %d, want the healthy socket alone", n)
	}
	if n := metric(t, p.url, "gateway_dead_peer_closes_total"); n != 1 {
		t.Fatalf("dead peer closes %v, want 1", n)
	}
	t.Logf("silent peer left presence %s after it connected", left.Round(10*time.Millisecond))
}

// TestFloodClosed1008 (issue 9): a socket flooding process frames is
// limited (an error frame rate_limited; frames over CLIENT_MSG_RATE never
// reach the order API) and then closed with 1008, while a quiet socket of
// the same merchant keeps receiving its orders.
func TestFloodClosed1008(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	var calls atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/process") {
			calls.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":{"code":"not_found","message":"no such order"}}`)
	}))
	defer api.Close()
	o, _ := redis.ParseURL(url)
	rdb := redis.NewClient(o)
	defer rdb.Close()
	store := publish.New(rdb, publish.Options{})
	mid := redistest.Unique("m")
	var last uint64
	publish := func(seq uint64) {
		last = seq
		fr := wire.MustEncode(wire.EventOrder, seq, time.Now().UnixMilli(), wire.OrderData{OrderSum: int64(seq), Order: wire.Order{
			OrderNo: fmt.Sprintf("u1%017d", seq), MerchantID: mid, UserID: "u1", Date: "2022-06-22", Status: "pending", CreatedAt: time.Now(),
		}})
		if _, err := store.Publish(context.Background(), mid, seq, int64(seq), fr); err != nil {
			t.Fatal(err)
		}
	}
	publish(1) // the merchant's state is in Redis: connects need no order API

	p := start(t, url, "ORDERAPI_URL="+api.URL, "CLIENT_MSG_RATE=10/s")
	quiet := sock(t, p.url, mid)
	flood := sock(t, p.url, mid)
	began := time.Now()
	frame := []byte(`{"event":"process","data":{"orderNo":"u100000000000000000001"}}`)
	sent := 0
	for ; sent < 2000; sent++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := flood.Send(ctx, frame)
		cancel()
		if err != nil {
			break // closed
		}
		if sent%50 == 0 {
			publish(last + 1)
		}
	}
	if err := flood.WaitClosed(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(began)
	if code := flood.CloseStatus(); code != websocket.StatusPolicyViolation {
		t.Fatalf("flooding socket ended with %v, want 1008", flood.Err())
	}
	limited := false
	for _, f := range flood.Frames() {
		if f.Event == wire.EventError && strings.Contains(string(f.Data), `"rate_limited"`) {
			limited = true
		}
	}
	if !limited {
		t.Fatal("no rate_limited error frame before the close")
	}
	// At most the burst (20) and what the rate refilled while it flooded.
	if n, most := calls.Load(), int64(20+10*elapsed.Seconds()+1); n > most {
		t.Fatalf("%d process calls reached the order API (%d frames sent in %s), want at most %d", n, sent, elapsed, most)
	}
	publish(last + 1)
	if err := quiet.WaitSeq(10*time.Second, last); err != nil {
		t.Fatal(err)
	}
	if err := wstest.CheckStream(quiet.Frames(), -1, false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-quiet.Done():
		t.Fatalf("quiet socket closed: %v", quiet.Err())
	default:
	}
	if n := metric(t, p.url, "gateway_flood_closes_total"); n != 1 {
		t.Fatalf("flood closes %v, want 1", n)
	}
	if n := metric(t, p.url, "gateway_client_frames_limited_total"); n < 1 {
		t.Fatalf("limited frames %v", n)
	}
	t.Logf("flood: %d frames sent in %s, %d reached the order API, closed 1008", sent, elapsed.Round(time.Millisecond), calls.Load())
}
