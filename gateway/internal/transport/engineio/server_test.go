package engineio

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
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
}

func (e *echo) Open(s *Session, _ *http.Request) Receiver {
	e.mu.Lock()
	e.sessions = append(e.sessions, s)
	e.mu.Unlock()
	return &echoConn{s: s, closed: e.closed}
}

type echoConn struct {
	s      *Session
	closed chan string
}

func (c *echoConn) Message(data []byte) {
	c.s.Send(AppendPacket(nil, Message, append([]byte(nil), data...)))
}
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
	first := read(t, ws)
	var o openPacket
	if !strings.HasPrefix(first, "0") || json.Unmarshal([]byte(first[1:]), &o) != nil || len(o.Upgrades) != 0 {
		t.Fatalf("open packet %q", first)
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
