package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
	"orderpush/scripts/launch"
)

// upgradeFrom sends one WebSocket upgrade request to gw from the loopback
// source address src, with X-Forwarded-For xff when not empty, and returns
// the status, the error code of a refusal and its Retry-After. A 101 is
// closed at once (the socket stays counted until the gateway sees the
// close), unless keep is set, in which case it stays open until the test
// ends.
func upgradeFrom(t *testing.T, gw *launch.Service, src, xff, tok string, keep bool) (status int, code string, retryAfter int) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	conn, err := d.Dial("tcp", gw.Addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", gw.Addr, src, err)
	}
	if keep {
		t.Cleanup(func() { _ = conn.Close() })
	} else {
		defer conn.Close()
	}
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	req := "GET /ws?token=" + url.QueryEscape(tok) + " HTTP/1.1\r\nHost: " + gw.Addr +
		"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	if xff != "" {
		req += "X-Forwarded-For: " + xff + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("upgrade answer from %s: %v", gw.Name, err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, "", 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Message == "" {
		t.Fatalf("%s answered %d %q: not the JSON error shape", gw.Name, resp.StatusCode, b)
	}
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	return resp.StatusCode, e.Error.Code, ra
}

// TestConnectLimits runs two gateway binaries on one Redis with the connect
// limits set low and checks each refusal as a client sees it: the
// per-merchant cap reached across both replicas, one address flooding
// connects while another behind the same trusted proxy is still admitted,
// a forged X-Forwarded-For from an untrusted peer ignored, and MAX_CONNS.
// 127.0.0.2 plays the trusted proxy; 127.0.0.1 is an untrusted client.
func TestConnectLimits(t *testing.T) {
	sys := launch.StartSystemT(t, launch.SystemSpec{
		Bins: bins, RedisURL: redistest.SharedURL(t),
		GatewayEnv: []string{"TRUSTED_PROXIES=127.0.0.2/32", "CONNECT_RATE=1/m", "MAX_CONNS_PER_MERCHANT=3", "MAX_CONNS=6"},
	})
	gw0, gw1 := sys.Gateways[0], sys.Gateways[1]
	const proxy, untrusted = "127.0.0.2", "127.0.0.1"
	client := 0
	nextClient := func() string { client++; return fmt.Sprintf("198.51.100.%d", client) } // a fresh bucket each
	opened := map[*launch.Service]int{}
	open := func(gw *launch.Service, tok string) {
		t.Helper()
		if st, code, _ := upgradeFrom(t, gw, proxy, nextClient(), tok, true); st != http.StatusSwitchingProtocols {
			t.Fatalf("socket on %s refused: %d %s", gw.Name, st, code)
		}
		opened[gw]++
	}

	// MAX_CONNS_PER_MERCHANT=3 across both replicas.
	m := redistest.Unique("cap")
	mt := sys.Token(token.RoleMerchant, m)
	open(gw0, mt)
	open(gw1, mt)
	open(gw0, mt)
	for _, gw := range []*launch.Service{gw1, gw0} {
		st, code, ra := upgradeFrom(t, gw, proxy, nextClient(), mt, false)
		if st != http.StatusTooManyRequests || code != "too_many_connections" || ra < 1 {
			t.Fatalf("4th socket of %s on %s: %d %s Retry-After %d, want 429 too_many_connections", m, gw.Name, st, code, ra)
		}
	}

	// CONNECT_RATE=1/m (burst 2) per client: 198.51.100.200 floods gw1
	// through the proxy; another client of the same proxy still gets in.
	flooder := "198.51.100.200"
	var refused int
	for i := range 6 {
		st, code, ra := upgradeFrom(t, gw1, proxy, flooder, sys.Token(token.RoleMerchant, redistest.Unique("fl")), false)
		switch {
		case i < 2 && st != http.StatusSwitchingProtocols:
			t.Fatalf("flood attempt %d inside the burst: %d %s", i, st, code)
		case i >= 2 && (st != http.StatusTooManyRequests || code != "rate_limited" || ra < 1 || ra > 60):
			t.Fatalf("flood attempt %d: %d %s Retry-After %d, want 429 rate_limited with Retry-After 1-60", i, st, code, ra)
		case i >= 2:
			refused++
		}
	}
	open(gw1, sys.Token(token.RoleMerchant, redistest.Unique("ok")))

	// 127.0.0.1 is not a trusted proxy: its X-Forwarded-For is ignored, so
	// a new forged address per attempt does not give it a new bucket.
	for i := range 3 {
		st, code, _ := upgradeFrom(t, gw1, untrusted, fmt.Sprintf("203.0.113.%d", i+1), sys.Token(token.RoleMerchant, redistest.Unique("fg")), false)
		if want := map[bool]int{true: http.StatusSwitchingProtocols, false: http.StatusTooManyRequests}[i < 2]; st != want {
			t.Fatalf("untrusted attempt %d with a forged X-Forwarded-For: %d %s, want %d", i, st, code, want)
		}
	}

	// MAX_CONNS=6 on gw0: fill it with sockets of fresh merchants, then the
	// next one is refused with 503.
	for opened[gw0] < 6 {
		open(gw0, sys.Token(token.RoleMerchant, redistest.Unique("mc")))
	}
	st, code, ra := upgradeFrom(t, gw0, proxy, nextClient(), sys.Token(token.RoleMerchant, redistest.Unique("mc")), false)
	if st != http.StatusServiceUnavailable || code != "unavailable" || ra < 1 {
		t.Fatalf("7th socket on gw0: %d %s Retry-After %d, want 503 unavailable", st, code, ra)
	}

	// Every refusal is counted by reason.
	for gw, want := range map[*launch.Service]map[string]int{
		gw0: {"too_many_connections": 1, "max_conns": 1},
		gw1: {"too_many_connections": 1, "rate_limited": refused + 1},
	} {
		body := get(t, gw.URL+"/metrics")
		for result, n := range want {
			line := fmt.Sprintf("gateway_connects_total{result=%q} %d", result, n)
			if !strings.Contains(body, line+"\n") {
				t.Errorf("%s /metrics lacks %q", gw.Name, line)
			}
		}
	}
}

func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestWeakSecretsRefused: both binaries refuse to start with a secret
// anyone could guess: exit 1, one line naming JWT_SECRET.
func TestWeakSecretsRefused(t *testing.T) {
	t.Parallel()
	secrets := map[string]string{
		"short":        "0123456789abcdef",
		"32 times a":   strings.Repeat("a", 32),
		"few distinct": strings.Repeat("abcdefgh", 6),
		"placeholder":  "change-me-this-is-a-placeholder-secret-of-48-bytes",
	}
	for name, bin := range map[string]string{"gateway": bins.Gateway, "orderapi": bins.OrderAPI} {
		for what, secret := range secrets {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			cmd := exec.CommandContext(ctx, bin)
			cmd.Env = []string{"JWT_SECRET=" + secret, "REDIS_URL=redis://127.0.0.1:1/0", "GATEWAY_ADDR=127.0.0.1:0",
				"ORDERAPI_ADDR=127.0.0.1:0", "DATABASE_URL=sqlite://" + t.TempDir() + "/o.db"}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			cancel()
			out := strings.TrimSpace(stderr.String())
			if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 {
				t.Errorf("%s with a %s secret: %v, want exit 1 (stderr %q)", name, what, err, out)
				continue
			}
			if strings.Count(out, "\n") != 0 || !strings.Contains(out, "JWT_SECRET") || strings.Contains(out, secret) {
				t.Errorf("%s with a %s secret said %q, want one line naming JWT_SECRET (and not the secret)", name, what, out)
			}
		}
	}
}
