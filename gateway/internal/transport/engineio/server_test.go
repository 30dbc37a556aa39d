package engineio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// echo is a Handler whose sessions send every message back.
type echo struct {
	mu       sync.Mutex
	sessions []*Session
	closed   chan string
	stalls   atomic.Int64
}

func (e *echo) Open(s *Session, _ *http.Request) Receiver {
	e.mu.Lock()
	e.sessions = append(e.sessions, s)
	e.mu.Unlock()
	return &echoConn{s: s, closed: e.closed, stalls: &e.stalls}
}

type echoConn struct {
	s      *Session
	closed chan string
	stalls *atomic.Int64
}

func (c *echoConn) Message(data []byte) {
	c.s.Send(AppendPacket(nil, Message, append([]byte(nil), data...)))
}
func (c *echoConn) Stalled()             { c.stalls.Add(1) }
func (c *echoConn) Dead()                { c.s.CloseNowFor("ping timeout") }
func (c *echoConn) Closed(reason string) { c.closed <- reason }

type fixture struct {
	srv  *Server
	h    *echo
	http *httptest.Server
}

func start(t *testing.T, cfg Config) *fixture {
	t.Helper()
	h := &echo{closed: make(chan string, 16)}
	srv := NewServer(cfg, h)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		for _, s := range srv.Sessions() {
			s.CloseNow()
		}
		hs.CloseClientConnections()
		hs.Close()
	})
	return &fixture{srv: srv, h: h, http: hs}
}

func (f *fixture) url(q string) string { return f.http.URL + "/socket.io/?EIO=4&" + q }

func do(t *testing.T, method, u, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type openPacket struct {
	SID          string   `json:"sid"`
	Upgrades     []string `json:"upgrades"`
	PingInterval int      `json:"pingInterval"`
	PingTimeout  int      `json:"pingTimeout"`
	MaxPayload   int      `json:"maxPayload"`
}

func handshake(t *testing.T, f *fixture) openPacket {
	t.Helper()
	status, body := do(t, http.MethodGet, f.url("transport=polling"), "")
	var o openPacket
	if status != 200 || !strings.HasPrefix(body, "0") || json.Unmarshal([]byte(body[1:]), &o) != nil || o.SID == "" {
		t.Fatalf("handshake: %d %q", status, body)
	}
	return o
}

func TestPollingHandshakeAndPayloads(t *testing.T) {
	t.Parallel()
	f := start(t, Config{PingInterval: time.Minute, MaxPayload: 1000})
	o := handshake(t, f)
	if len(o.Upgrades) != 1 || o.Upgrades[0] != "websocket" || o.PingInterval != 60000 || o.PingTimeout != 20000 || o.MaxPayload != 1000 {
		t.Fatalf("open packet %+v", o)
	}
	if status, body := do(t, http.MethodPost, f.url("transport=polling&sid="+o.SID), "4hello\x1e4world"); status != 200 || body != "ok" {
		t.Fatalf("POST: %d %q", status, body)
	}
	if status, body := do(t, http.MethodGet, f.url("transport=polling&sid="+o.SID), ""); status != 200 || body != "4hello\x1e4world" {
		t.Fatalf("GET: %d %q", status, body)
	}
	// A long poll waits for what comes next.
	got := make(chan string, 1)
	go func() {
		_, body := do(t, http.MethodGet, f.url("transport=polling&sid="+o.SID), "")
		got <- body
	}()
	waitFor(t, "a parked poll", func() bool {
		s := f.srv.lookup(o.SID)
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.polled
	})
	// A second GET meanwhile is a protocol error: 400, and the session ends.
	if status, _ := do(t, http.MethodGet, f.url("transport=polling&sid="+o.SID), ""); status != 400 {
		t.Fatalf("overlapping GET: %d", status)
	}
	if r := <-f.h.closed; r != "transport error" {
		t.Fatalf("closed for %q", r)
	}
	if body := <-got; body != "1" {
		t.Fatalf("the parked poll got %q, want the close packet", body)
	}
	if status, body := do(t, http.MethodGet, f.url("transport=polling&sid="+o.SID), ""); status != 400 || !strings.Contains(body, `"code":1`) {
		t.Fatalf("GET after close: %d %q", status, body)
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	f := start(t, Config{MaxPayload: 10, CheckOrigin: func(o string) bool { return o == "https://ok.example" }})
	for _, tc := range []struct {
		method, q, body string
		code            string
	}{
		{http.MethodGet, "transport=carrier-pigeon", "", `"code":0`},
		{http.MethodGet, "transport=polling&sid=nope", "", `"code":1`},
		{http.MethodPost, "transport=polling", "", `"code":2`},
		{http.MethodGet, "transport=polling&j=1", "", `"code":3`},
	} {
		if status, body := do(t, tc.method, f.url(tc.q), tc.body); status != 400 || !strings.Contains(body, tc.code) {
			t.Errorf("%s %s: %d %q, want 400 %s", tc.method, tc.q, status, body, tc.code)
		}
	}
	if status, body := do(t, http.MethodGet, f.http.URL+"/socket.io/?EIO=3&transport=polling", ""); status != 400 || !strings.Contains(body, `"code":5`) {
		t.Errorf("EIO=3: %d %q", status, body)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, f.url("transport=polling"), nil)
	req.Header.Set("Origin", "https://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("foreign origin: %d", resp.StatusCode)
	}
	// Over maxPayload: refused and the session ends.
	o := handshake(t, f)
	if status, _ := do(t, http.MethodPost, f.url("transport=polling&sid="+o.SID), "4"+strings.Repeat("x", 10)); status != 400 {
		t.Fatalf("POST over maxPayload: %d", status)
	}
	if r := <-f.h.closed; r != "transport error" {
		t.Fatalf("closed for %q", r)
	}
	// A payload that does not parse ends the session too.
	o = handshake(t, f)
	if status, _ := do(t, http.MethodPost, f.url("transport=polling&sid="+o.SID), "9"); status != 400 {
		t.Fatalf("POST of garbage: %d", status)
	}
	if r := <-f.h.closed; r != "parse error" {
		t.Fatalf("closed for %q", r)
	}
}

func TestPingTimeout(t *testing.T) {
	t.Parallel()
	f := start(t, Config{PingInterval: 50 * time.Millisecond, PingTimeout: 100 * time.Millisecond})
	o := handshake(t, f)
	q := f.url("transport=polling&sid=" + o.SID)
	// Answered pings keep the session.
	for range 3 {
		if _, body := do(t, http.MethodGet, q, ""); body != "2" {
			t.Fatalf("poll got %q, want a ping", body)
		}
		if status, _ := do(t, http.MethodPost, q, "3"); status != 200 {
			t.Fatalf("pong: %d", status)
		}
	}
	select {
	case r := <-f.h.closed:
		t.Fatalf("closed (%s) although every ping was answered", r)
	default:
	}
	// An unanswered one ends it.
	if _, body := do(t, http.MethodGet, q, ""); body != "2" {
		t.Fatalf("poll got %q, want a ping", body)
	}
	select {
	case r := <-f.h.closed:
		if r != "ping timeout" {
			t.Fatalf("closed for %q", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no ping timeout")
	}
}

func TestUpgrade(t *testing.T) {
	t.Parallel()
	f := start(t, Config{PingInterval: time.Minute})
	o := handshake(t, f)
	q := "transport=polling&sid=" + o.SID
	parked := make(chan string, 1)
	go func() {
		_, body := do(t, http.MethodGet, f.url(q), "")
		parked <- body
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.url("transport=websocket&sid="+o.SID), "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	write(t, ws, "2probe")
	if got := read(t, ws); got != "3probe" {
		t.Fatalf("probe answer %q", got)
	}
	// The parked poll is released with a noop, so the client can pause.
	if body := <-parked; body != "6" {
		t.Fatalf("parked poll got %q, want a noop", body)
	}
	// A batch written now waits for a GET that will not come: the upgrade
	// hands it to the websocket, first.
	sess := f.srv.lookup(o.SID)
	wrote := make(chan error, 1)
	go func() { wrote <- sess.Write([][]byte{[]byte("4queued during the upgrade")}) }()
	waitFor(t, "the batch waiting for a GET", func() bool {
		sess.mu.Lock()
		defer sess.mu.Unlock()
		return len(sess.payload) == 1
	})
	write(t, ws, "5")
	if got := read(t, ws); got != "4queued during the upgrade" {
		t.Fatalf("after upgrade %q", got)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("Write across the upgrade: %v", err)
	}
	write(t, ws, "4echo")
	if got := read(t, ws); got != "4echo" {
		t.Fatalf("echo over websocket %q", got)
	}
	// Polling is over for this session.
	if status, _ := do(t, http.MethodGet, f.url(q), ""); status != 400 {
		t.Fatalf("poll after upgrade: %d", status)
	}
	sess.Close("done")
	if _, _, err := ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("after Close: %v", err)
	}
}

func TestWebSocketOnly(t *testing.T) {
	t.Parallel()
	f := start(t, Config{PingInterval: 50 * time.Millisecond, PingTimeout: 5 * time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.url("transport=websocket"), "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	o := opened(t, ws)
	if len(o.Upgrades) != 0 {
		t.Fatalf("open packet %+v offers upgrades over a websocket", o)
	}
	if got := read(t, ws); got != "2" {
		t.Fatalf("want a ping, got %q", got)
	}
	write(t, ws, "3")
	write(t, ws, "4a")
	for {
		got := read(t, ws)
		if got == "4a" {
			break
		}
		if got != "2" {
			t.Fatalf("got %q", got)
		}
		write(t, ws, "3")
	}
	sess := f.srv.lookup(o.SID)
	write(t, ws, "1") // the client closes
	if r := <-f.h.closed; r != "forced close" {
		t.Fatalf("closed for %q", r)
	}
	if sess.Write([][]byte{[]byte("4x")}) == nil {
		t.Fatal("Write after close succeeded")
	}
}

// TestPollingWrite: a polling batch waits until a GET took it, with what
// Send added meanwhile; Close hands the close packet to the next GET and
// ends the session.
func TestPollingWrite(t *testing.T) {
	t.Parallel()
	f := start(t, Config{PingInterval: time.Minute})
	o := handshake(t, f)
	s := f.srv.lookup(o.SID)
	q := f.url("transport=polling&sid=" + o.SID)
	wrote := make(chan error, 1)
	go func() { wrote <- s.Write([][]byte{[]byte("4a"), []byte("4b")}) }()
	waitFor(t, "the batch waiting", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.payload) == 2
	})
	select {
	case err := <-wrote:
		t.Fatalf("Write returned (%v) before a GET took the batch", err)
	default:
	}
	s.Send([]byte("2"))
	if _, body := do(t, http.MethodGet, q, ""); body != "4a\x1e4b\x1e2" {
		t.Fatalf("GET %q", body)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("Write: %v", err)
	}
	parked := make(chan string, 1)
	go func() {
		_, body := do(t, http.MethodGet, q, "")
		parked <- body
	}()
	s.Close("bye")
	if body := <-parked; body != "1" {
		t.Fatalf("the poll got %q, want the close packet", body)
	}
	if r := <-f.h.closed; r != "bye" {
		t.Fatalf("closed for %q", r)
	}
	if s.Write([][]byte{[]byte("4c")}) == nil {
		t.Fatal("Write after Close succeeded")
	}
}

func write(t *testing.T, ws *websocket.Conn, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

func read(t *testing.T, ws *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 5 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAdmit: a refused handshake gets the open packet, the refusal and
// the close packet, and leaves no session; an admitted one gives its place
// back when it ends.
func TestAdmit(t *testing.T) {
	t.Parallel()
	var refuse atomic.Bool
	released := make(chan struct{}, 4)
	f := start(t, Config{PingInterval: time.Minute, Admit: func(*http.Request) (func(), []byte) {
		if refuse.Load() {
			return nil, []byte(`4{"message":"rate_limited"}`)
		}
		return func() { released <- struct{}{} }, nil
	}})
	refuse.Store(true)
	status, body := do(t, http.MethodGet, f.url("transport=polling"), "")
	parts := strings.Split(body, "\x1e")
	if status != 200 || len(parts) != 3 || !strings.HasPrefix(parts[0], "0{") || parts[1] != `44{"message":"rate_limited"}` || parts[2] != "1" {
		t.Fatalf("refused handshake: %d %q", status, body)
	}
	if n := f.srv.Len(); n != 0 {
		t.Fatalf("%d sessions kept after a refusal", n)
	}
	refuse.Store(false)
	o := handshake(t, f)
	f.srv.lookup(o.SID).CloseNow()
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("the place was not given back")
	}
}

// countingListener counts the network writes on the connections it
// accepts.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, writes: l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestWebSocketBatch: a batch written by Session.Write reaches the client
// as one message per packet, whole and in order, in one network write, for
// packets shorter than, around and far longer than the connection's write
// buffer; WebSocket pings the client sends meanwhile are answered without
// landing inside a message.
func TestWebSocketBatch(t *testing.T) {
	t.Parallel()
	h := &echo{closed: make(chan string, 16)}
	srv := NewServer(Config{PingInterval: time.Hour}, h) // no Engine.IO ping among the writes
	hs := httptest.NewUnstartedServer(srv)
	var writes atomic.Int64
	hs.Listener = countingListener{Listener: hs.Listener, writes: &writes}
	hs.Start()
	t.Cleanup(func() {
		for _, s := range srv.Sessions() {
			s.CloseNow()
		}
		hs.CloseClientConnections()
		hs.Close()
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/socket.io/?EIO=4&transport=websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(-1)
	o := opened(t, ws)
	sess := srv.lookup(o.SID)
	var batch [][]byte
	for i, n := range []int{1, 59, 60, 61, 63, 64, 65, 126, 200, 4096, 70000} {
		batch = append(batch, []byte(fmt.Sprintf("4%d:%s", i, strings.Repeat("x", n))))
	}
	readBatch := func() {
		t.Helper()
		for i, want := range batch {
			if got := read(t, ws); got != string(want) {
				t.Fatalf("message %d: got %d bytes %.12q..., want %d bytes %.12q...", i, len(got), got, len(want), want)
			}
		}
	}

	before := writes.Load()
	done := make(chan error, 1)
	go func() { done <- sess.Write(batch) }()
	readBatch()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := writes.Load() - before; n != 1 {
		t.Fatalf("a batch of %d packets took %d network writes, want 1", len(batch), n)
	}

	// Pings go on while 20 more batches are written; the second waits for
	// the first pong, so pongs are written while batches are.
	pinging, stop := context.WithCancel(ctx)
	defer stop()
	pong := make(chan struct{})
	pinged := make(chan int, 1)
	go func() {
		n := 0
		for pinging.Err() == nil {
			if ws.Ping(pinging) == nil {
				if n++; n == 1 {
					close(pong)
				}
			}
		}
		pinged <- n
	}()
	go func() {
		for i := range 20 {
			if i == 1 {
				<-pong
			}
			if err := sess.Write(batch); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for range 20 {
		readBatch()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	stop()
	t.Logf("%d pings answered", <-pinged)
}

// TestWebSocketStalledWrite: a write the peer takes slowly is reported
// (Stalled) once it waited the write timeout, and goes on: the peer that
// reads again gets every message whole and in order, and Write succeeds.
func TestWebSocketStalledWrite(t *testing.T) {
	t.Parallel()
	f := start(t, Config{PingInterval: time.Hour, WriteTimeout: time.Second})
	// A tiny receive buffer, set before connect, so the writes back up.
	small := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8192)
		})
		return errors.Join(err, serr)
	}}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.url("transport=websocket"), "http"),
		&websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: small.DialContext}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(-1)
	o := opened(t, ws)
	sess := f.srv.lookup(o.SID)
	var batch [][]byte
	for i := range 1000 { // 16 MiB: more than the kernel buffers hold
		batch = append(batch, []byte(fmt.Sprintf("4%d:%s", i, strings.Repeat("x", 16<<10))))
	}
	done := make(chan error, 1)
	go func() { done <- sess.Write(batch) }()
	waitFor(t, "a stalled write reported", func() bool { return f.h.stalls.Load() > 0 })
	for i, want := range batch {
		_, got, err := ws.Read(ctx)
		if err != nil || string(got) != string(want) {
			t.Fatalf("message %d: %d bytes %.12q... (%v), want %d bytes %.12q...", i, len(got), got, err, len(want), want)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("write of a stalled batch: %v", err)
	}
}

// opened reads the open packet a websocket session starts with.
func opened(t *testing.T, ws *websocket.Conn) openPacket {
	t.Helper()
	var o openPacket
	if first := read(t, ws); !strings.HasPrefix(first, "0") || json.Unmarshal([]byte(first[1:]), &o) != nil {
		t.Fatalf("open packet %q", first)
	}
	return o
}
