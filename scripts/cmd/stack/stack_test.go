package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"orderpush/pkg/wire"
	"orderpush/scripts/launch"
)

// TestStackCommand runs the stack command as a user would (with the
// in-process Redis forced, on free ports), then follows its printed
// instructions: an order placed with the printed member token shows on a
// socket opened with the printed merchant token, on both replicas.
func TestStackCommand(t *testing.T) {
	dir := t.TempDir()
	stackBin := filepath.Join(dir, "stack")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", stackBin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the stack command: %v\n%s", err, out)
	}
	ports := make([]int, 3)
	for i := range ports {
		p, err := launch.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	var out launch.Output // stdout and stderr: launch merges them
	p, err := launch.Start(context.Background(), launch.Spec{
		Name: "stack", Path: stackBin,
		Args: []string{"-miniredis", "-orderapi-port", strconv.Itoa(ports[0]),
			"-gateway-ports", fmt.Sprintf("%d,%d", ports[1], ports[2]),
			"-bin", filepath.Join(dir, "bin"), "-data", filepath.Join(dir, "data")},
		Env:    []string{"JWT_SECRET=", "REDIS_URL="},
		Output: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("stack output:\n%s", out.String())
			for _, name := range []string{"orderapi", "gateway-a", "gateway-b"} {
				b, _ := os.ReadFile(filepath.Join(dir, "data", "logs", name+".log"))
				t.Logf("--- %s.log ---\n%s", name, b)
			}
		}
	})

	// The build inside the command is the slow part.
	deadline := time.Now().Add(5 * time.Minute)
	for !strings.Contains(out.String(), "Press Ctrl-C to stop.") {
		if p.Exited() {
			code, err := p.Wait()
			t.Fatalf("stack exited early (status %d, %v)", code, err)
		}
		if time.Now().After(deadline) {
			t.Fatal("stack never said it is up")
		}
		time.Sleep(50 * time.Millisecond) // poll interval, bounded by the deadline
	}
	banner := out.String()
	for _, want := range []string{"in-process miniredis", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[2]), "curl -sS -X POST", "stack watch"} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q", want)
		}
	}
	merchantTok := find(t, banner, `merchant token \(m1\): (\S+)`)
	memberTok := find(t, banner, `member token \(u1001\): (\S+)`)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var socks []*websocket.Conn
	for _, port := range ports[1:] {
		c, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/ws?token=%s", port, url.QueryEscape(merchantTok)), nil)
		if err != nil {
			t.Fatalf("dial gateway on %d: %v", port, err)
		}
		defer c.CloseNow()
		if f := read(t, ctx, c); f.Event != wire.EventHello {
			t.Fatalf("first frame %+v, want hello", f)
		}
		socks = append(socks, c)
	}

	// The printed curl line, as Go.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/orders", ports[0]),
		strings.NewReader(`{"merchantId":"m1","date":"2022-06-22","price":36}`))
	req.Header.Set("Authorization", "Bearer "+memberTok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var placed wire.Order
	err = json.NewDecoder(resp.Body).Decode(&placed)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || err != nil {
		t.Fatalf("POST /orders: %s %v", resp.Status, err)
	}
	for _, c := range socks {
		f := read(t, ctx, c)
		var d struct {
			OrderSum int64      `json:"orderSum"`
			Order    wire.Order `json:"order"`
		}
		if f.Event != wire.EventOrder || f.Seq != 1 || json.Unmarshal(f.Data, &d) != nil || d.Order.OrderNo != placed.OrderNo || d.OrderSum != 1 {
			t.Fatalf("got %+v, want order %s with seq 1", f, placed.OrderNo)
		}
	}

	// Ctrl-C stops everything cleanly.
	p.Signal(syscall.SIGINT)
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("stack still running 30 s after SIGINT")
	}
	if code, err := p.Wait(); code != 0 || err != nil {
		t.Fatalf("stack exit: %d %v", code, err)
	}
	for _, port := range ports {
		if err := portFree("127.0.0.1", port); err != nil {
			t.Errorf("after exit: %v", err)
		}
	}
}

func find(t *testing.T, s, re string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("output lacks %s", re)
	}
	return m[1]
}

func read(t *testing.T, ctx context.Context, c *websocket.Conn) wire.Frame {
	t.Helper()
	_, msg, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var f wire.Frame
	if err := json.Unmarshal(msg, &f); err != nil {
		t.Fatalf("frame %q: %v", msg, err)
	}
	return f
}

func TestParseOptions(t *testing.T) {
	t.Parallel()
	o, err := parseOptions(nil, &bytes.Buffer{})
	if err != nil || o.orderAPIPort != 8090 || len(o.gatewayPorts) != 2 || o.gatewayPorts[0] != 8080 || o.gatewayPorts[1] != 8081 {
		t.Fatalf("defaults: %+v %v", o, err)
	}
	for _, bad := range [][]string{
		{"-gateway-ports", "8080,x"},
		{"-gateway-ports", "8090"},           // same as the order API
		{"-gateway-ports", "8080,8080"},      // twice
		{"-orderapi-port", "0"},              // not a port
		{"-merchant", "m 1"},                 // not a merchant id
		{"extra"},                            // stray argument
		{"-gateway-ports", "8080,70000"},     // out of range
		{"-member", strings.Repeat("u", 40)}, // too long a user id
	} {
		if _, err := parseOptions(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSplitFrames(t *testing.T) {
	t.Parallel()
	got := splitFrames([]byte("{\"event\":\"a\"}\n{\"event\":\"b\"}\n"))
	if len(got) != 2 || string(got[0]) != `{"event":"a"}` || string(got[1]) != `{"event":"b"}` {
		t.Fatalf("%q", got)
	}
}
