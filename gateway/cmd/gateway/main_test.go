package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"orderpush/gateway/internal/wstest"
	"orderpush/pkg/presence"
	"orderpush/pkg/rediskey"
	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
)

var secret = "process-test-secret-0123456789abcdef"

// binary is the gateway built once for this package's tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gateway-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "gateway")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one gateway process.
type proc struct {
	cmd    *exec.Cmd
	url    string
	node   string
	stderr *bytes.Buffer
	exited chan struct{}
	err    error
}

func start(t *testing.T, redisURL string, env ...string) *proc {
	t.Helper()
	port := redistest.FreePort(t)
	p := &proc{url: fmt.Sprintf("http://127.0.0.1:%d", port), node: strings.ReplaceAll(redistest.Unique("proc"), "-", ""),
		stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(binary)
	p.cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"GATEWAY_ADDR=127.0.0.1:" + fmt.Sprint(port),
		"NODE_ID=" + p.node,
		"JWT_SECRET=" + secret,
		"REDIS_URL=" + redisURL,
		"LOG_LEVEL=debug",
	}, env...)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("gateway %s log:\n%s", p.node, p.stderr)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(p.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("gateway exited: %v\n%s", p.err, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, bounded by the deadline
	}
}

func sock(t *testing.T, base, mid string) *wstest.Conn {
	t.Helper()
	tok, err := token.Mint([]byte(secret), token.RoleMerchant, mid, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := wstest.Dial(context.Background(), wstest.URL(base, tok, -1), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.WS.CloseNow() })
	if _, err := c.WaitEvent(10*time.Second, "hello", 1); err != nil {
		t.Fatal(err)
	}
	return c
}

func online(t *testing.T, redisURL, mid string) int {
	t.Helper()
	o, _ := redis.ParseURL(redisURL)
	rdb := redis.NewClient(o)
	defer rdb.Close()
	n, err := presence.New(rdb, 0).Online(context.Background(), mid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBadSettingExits1: a missing or malformed setting stops start-up with
// exit status 1 and one line naming it.
func TestBadSettingExits1(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ env, name string }{
		{"JWT_SECRET=", "JWT_SECRET"},
		{"JWT_SECRET=short", "JWT_SECRET"},
		{"SEND_QUEUE_SIZE=lots", "SEND_QUEUE_SIZE"},
		{"REDIS_URL=mysql://x", "REDIS_URL"},
		{"ALLOWED_ORIGINS=https://[", "ALLOWED_ORIGINS"},
		{"PING_INTERVAL=forever", "PING_INTERVAL"},
		{"GATEWAY_ADDR=nowhere", "GATEWAY_ADDR"},
	} {
		cmd := exec.Command(binary)
		cmd.Env = []string{"JWT_SECRET=" + secret, tc.env}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("%s: exit %v, want status 1", tc.env, err)
		}
		out := strings.TrimSpace(stderr.String())
		if strings.Count(out, "\n") != 0 || !strings.Contains(out, tc.name) {
			t.Fatalf("%s: stderr %q, want one line naming %s", tc.env, out, tc.name)
		}
	}
}

// TestDrainOnSIGTERM (issue 4): SIGTERM closes every socket with 1001,
// refuses new ones, removes presence and exits 0 within 10 s.
func TestDrainOnSIGTERM(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	p := start(t, url, "DRAIN_SPREAD=1s")
	mid := redistest.Unique("m")
	var socks []*wstest.Conn
	for range 5 {
		socks = append(socks, sock(t, p.url, mid))
	}
	if n := online(t, url, mid); n != 5 {
		t.Fatalf("online %d before the drain, want 5", n)
	}
	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	firstClose, lastClose := time.Hour, time.Duration(0)
	for i, c := range socks {
		if err := c.WaitClosed(10 * time.Second); err != nil {
			t.Fatalf("socket %d: %v", i, err)
		}
		if code := c.CloseStatus(); code != websocket.StatusGoingAway {
			t.Fatalf("socket %d closed with %v, want 1001", i, c.Err())
		}
		d := c.EndedAt().Sub(sent)
		firstClose, lastClose = min(firstClose, d), max(lastClose, d)
	}
	if lastClose-firstClose < 500*time.Millisecond {
		t.Fatalf("closes not spread: %s to %s", firstClose, lastClose)
	}
	select {
	case <-p.exited:
	case <-time.After(10*time.Second - time.Since(sent)):
		t.Fatal("gateway still running 10 s after SIGTERM")
	}
	if p.err != nil {
		t.Fatalf("exit: %v, want status 0", p.err)
	}
	exited := time.Since(sent)
	if n := online(t, url, mid); n != 0 {
		t.Fatalf("online %d after the drain", n)
	}
	// The listener is gone: no new sockets.
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(p.url, "http://"), time.Second); err == nil {
		t.Fatal("still accepting connections after exit")
	}
	t.Logf("SIGTERM: sockets closed 1001 from %s to %s, exit 0 after %s", firstClose.Round(time.Millisecond),
		lastClose.Round(time.Millisecond), exited.Round(time.Millisecond))
}

// TestSIGKILLLeavesPresence (issue 4): a replica killed with SIGKILL drops
// out of presence within the 10 s expiry while the other's stay counted.
func TestSIGKILLLeavesPresence(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	a, b := start(t, url), start(t, url)
	mid := redistest.Unique("m")
	sock(t, a.url, mid)
	sock(t, a.url, mid)
	sock(t, b.url, mid)
	if n := online(t, url, mid); n != 3 {
		t.Fatalf("online %d, want 3", n)
	}
	killed := time.Now()
	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-b.exited
	// Nothing renews its liveness key any more: it expires within 10 s.
	o, _ := redis.ParseURL(url)
	rdb := redis.NewClient(o)
	defer rdb.Close()
	if ttl := rdb.PTTL(context.Background(), rediskey.NodeAlive(b.node)).Val(); ttl <= 0 || ttl > 10*time.Second {
		t.Fatalf("liveness key of the killed replica expires in %s", ttl)
	}
	for online(t, url, mid) != 2 {
		if time.Since(killed) > 15*time.Second {
			t.Fatalf("killed replica still counted after %s", time.Since(killed))
		}
		time.Sleep(50 * time.Millisecond) // poll interval, bounded above
	}
	t.Logf("SIGKILLed replica left presence after %s", time.Since(killed).Round(100*time.Millisecond))
}
