package sidroute

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"orderpush/pkg/config"
	"orderpush/pkg/rediskey"
	"orderpush/pkg/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

func TestNodeOf(t *testing.T) {
	t.Parallel()
	random := strings.Repeat("a", randomLen)
	for sid, want := range map[string]string{
		SID(random, "gw-1"):                   "gw-1",
		SID(random, "gateway1.prod_2"):        "gateway1.prod_2",
		random:                                "",
		random + ".":                          "",
		random + ".evil.example:80/x":         "",
		random + ".10.0.0.1:8080":             "",
		"short.gw-1":                          "",
		SID(random, strings.Repeat("n", 101)): "",
	} {
		got, ok := NodeOf(sid)
		if got != want || ok != (want != "") {
			t.Errorf("NodeOf(%q) = %q, %v; want %q", sid, got, ok, want)
		}
	}
}

func FuzzNodeOf(f *testing.F) {
	f.Add(SID(strings.Repeat("a", randomLen), "gw-1"))
	f.Add("x")
	f.Fuzz(func(t *testing.T, sid string) {
		node, ok := NodeOf(sid)
		if !ok {
			return
		}
		if SID(sid[:randomLen], node) != sid || strings.ContainsAny(node, ":/@?#") {
			t.Fatalf("NodeOf(%q) = %q", sid, node)
		}
	})
}

func TestParseAdvertise(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"http://10.0.0.5:8080", "https://gw.internal:443/", "http://[::1]:8080"} {
		if _, err := ParseAdvertise(ok); err != nil {
			t.Errorf("ParseAdvertise(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "10.0.0.5:8080", "ftp://x", "http://", "http://u:p@h:1", "http://h:1/path", "http://h:1?q=1"} {
		if _, err := ParseAdvertise(bad); err == nil {
			t.Errorf("ParseAdvertise(%q) accepted", bad)
		}
	}
	if got := DefaultAdvertise("127.0.0.1:8081"); got != "http://127.0.0.1:8081" {
		t.Errorf("DefaultAdvertise(127.0.0.1:8081) = %s", got)
	}
	if got := DefaultAdvertise(":8080"); !strings.HasPrefix(got, "http://") || !strings.HasSuffix(got, ":8080") || strings.Contains(got, "0.0.0.0") {
		t.Errorf("DefaultAdvertise(:8080) = %s", got)
	}
}

// TestForward: a request for a session of a live replica reaches it; one
// naming an unknown node, a dead one, or this one, is not forwarded, and
// a forwarded request is never forwarded again.
func TestForward(t *testing.T) {
	t.Parallel()
	rc, err := config.ParseRedisURL(redistest.SharedURL(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := rc.NewRedis("sidroute-test")
	defer rdb.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	var hits atomic.Int64
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get(ForwardedHeader) == "" {
			t.Errorf("forwarded request without %s", ForwardedHeader)
		}
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, r.Method+" "+r.URL.RawQuery+" "+string(b))
	}))
	defer owner.Close()

	ownerNode, selfNode := redistest.Unique("owner"), redistest.Unique("self")
	ctx, cancel := context.WithCancel(context.Background())
	ownerRouter := New(Config{Node: ownerNode, Self: owner.URL, TTL: 10 * time.Second, Beat: time.Second, PollTimeout: 5 * time.Second}, rdb, log)
	ran := make(chan struct{})
	go func() {
		ownerRouter.Run(ctx)
		close(ran)
	}()
	markAlive(t, rdb, ownerNode)

	self := New(Config{Node: selfNode, Self: "http://127.0.0.1:1", TTL: 10 * time.Second, Beat: time.Second, PollTimeout: 5 * time.Second}, rdb, log)
	defer self.tr.CloseIdleConnections()
	random := strings.Repeat("b", randomLen)
	serve := func(sid string, hdr http.Header) (bool, string) {
		req := httptest.NewRequest(http.MethodPost, "/socket.io/?EIO=4&transport=polling&sid="+sid, strings.NewReader("4x"))
		for k, v := range hdr {
			req.Header[k] = v
		}
		w := httptest.NewRecorder()
		ok := self.Forward(w, req, sid)
		return ok, w.Body.String()
	}
	var ok bool
	var body string
	deadline := time.Now().Add(5 * time.Second)
	for !ok && time.Now().Before(deadline) {
		ok, body = serve(SID(random, ownerNode), nil)
		if !ok {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !ok || body != "POST EIO=4&transport=polling&sid="+SID(random, ownerNode)+" 4x" {
		t.Fatalf("forward to the live owner: %v %q", ok, body)
	}
	before := hits.Load()
	for name, sid := range map[string]string{
		"unknown node": SID(random, redistest.Unique("nobody")),
		"this node":    SID(random, selfNode),
		"address":      random + ".127.0.0.1:6379",
	} {
		if ok, _ := serve(sid, nil); ok {
			t.Errorf("%s: forwarded", name)
		}
	}
	if ok, _ := serve(SID(random, ownerNode), http.Header{ForwardedHeader: {"x"}}); ok {
		t.Error("an already forwarded request was forwarded again")
	}
	// A replica whose liveness lapsed is no target, although its address
	// is still published.
	if err := rdb.Del(context.Background(), rediskey.NodeAlive(ownerNode)).Err(); err != nil {
		t.Fatal(err)
	}
	self.mu.Lock()
	clear(self.cache)
	self.mu.Unlock()
	if ok, _ := serve(SID(random, ownerNode), nil); ok {
		t.Error("forwarded to a dead replica")
	}
	if hits.Load() != before {
		t.Errorf("the owner got %d requests it should not have", hits.Load()-before)
	}
	cancel()
	<-ran
	if n, _ := rdb.Exists(context.Background(), rediskey.NodeAddr(ownerNode)).Result(); n != 0 {
		t.Error("the address outlived Run")
	}
}

func markAlive(t *testing.T, rdb redis.UniversalClient, node string) {
	t.Helper()
	if err := rdb.Set(context.Background(), rediskey.NodeAlive(node), 1, 10*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
}
