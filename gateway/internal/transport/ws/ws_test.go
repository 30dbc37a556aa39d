package ws

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/session"
	"orderpush/gateway/internal/session/sendq"
	"orderpush/pkg/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// serve runs s behind a test server with cfg and dials it.
func serve(t *testing.T, s *session.Session, m *metrics.Metrics, cfg Config) *websocket.Conn {
	t.Helper()
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		c, err := Accept(w, r, s, cfg, nil, discard, m)
		if err != nil {
			return
		}
		c.Run(context.Background(), nil)
	}))
	t.Cleanup(func() {
		s.Abort()
		<-done
		srv.Close()
	})
	c, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

func newSession(id session.Identity, cfg session.Config) (*session.Session, *metrics.Metrics) {
	m := metrics.New(prometheus.NewRegistry())
	id.ID, id.Merchant, id.Bearer, id.Transport = "c1", "m1", "tok", metrics.TransportWS
	return session.New(id, cfg, session.Deps{Log: discard, Metrics: m}), m
}

func read(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBatchJoinsWhatIsQueued: with batch mode, frames already queued when
// the writer runs go out as one message, separated by '\n'; without it, one
// message per frame.
func TestBatchJoinsWhatIsQueued(t *testing.T) {
	for _, batch := range []bool{true, false} {
		s, m := newSession(session.Identity{}, session.Config{QueueSize: 16})
		var want []string
		for i := range 10 {
			f := fmt.Sprintf(`{"event":"order","seq":%d}`, i+1)
			want = append(want, f)
			if !s.TrySend(sendq.Entry{Data: []byte(f)}) {
				t.Fatal("queue refused")
			}
		}
		c := serve(t, s, m, Config{Batch: batch})
		var got []string
		for len(got) < 10 {
			got = append(got, strings.Split(read(t, c), "\n")...)
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("batch=%v: got %v", batch, got)
		}
		// The writer counts after each write returns, which may be after
		// the peer read it.
		wantMsgs := 10.0
		if batch {
			wantMsgs = 1
		}
		deadline := time.Now().Add(5 * time.Second)
		for testutil.ToFloat64(m.FramesSent) != 10 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // polling a counter, bounded by the deadline
		}
		if msgs := testutil.ToFloat64(m.WebSocketMessages); msgs != wantMsgs || testutil.ToFloat64(m.FramesSent) != 10 {
			t.Fatalf("batch=%v: %v messages, %v frames", batch, msgs, testutil.ToFloat64(m.FramesSent))
		}
	}
}

// TestCloseCodes: Close and Overflow reach the peer as close frames with
// their codes, and the queue refuses frames after the writer ended.
func TestCloseCodes(t *testing.T) {
	for _, tc := range []struct {
		do   func(*session.Session)
		code websocket.StatusCode
	}{
		{func(s *session.Session) { s.Overflow() }, websocket.StatusTryAgainLater},
		{func(s *session.Session) { s.Close(session.GoingAway, "going away") }, websocket.StatusGoingAway},
		{func(s *session.Session) { s.Close(session.Policy, "token expired") }, websocket.StatusPolicyViolation},
		{func(s *session.Session) { s.Close(session.TooBig, "") }, websocket.StatusMessageTooBig},
	} {
		s, m := newSession(session.Identity{}, session.Config{})
		c := serve(t, s, m, Config{})
		tc.do(s)
		tc.do(s) // idempotent
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, err := c.Read(ctx)
		cancel()
		if websocket.CloseStatus(err) != tc.code {
			t.Fatalf("got %v, want %v", err, tc.code)
		}
		if tc.code == websocket.StatusTryAgainLater && testutil.ToFloat64(m.SlowConsumerCloses) != 1 {
			t.Fatal("slow consumer not counted once")
		}
	}
}

// TestTokenExpiry: the socket closes with 1008 at the token's exp.
func TestTokenExpiry(t *testing.T) {
	s, m := newSession(session.Identity{Expiry: time.Now().Add(200 * time.Millisecond)}, session.Config{})
	c := serve(t, s, m, Config{})
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation || time.Since(start) > 3*time.Second {
		t.Fatalf("got %v after %s", err, time.Since(start))
	}
}

// TestKeepalivePing: the writer pings on its interval and the peer's pong
// (answered by its reader) keeps the socket open.
func TestKeepalivePing(t *testing.T) {
	s, m := newSession(session.Identity{}, session.Config{})
	pings := make(chan struct{}, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, s, Config{PingInterval: 20 * time.Millisecond, PingTimeout: time.Second}, nil, discard, m)
		if err == nil {
			c.Run(context.Background(), nil)
		}
	}))
	defer srv.Close()
	c, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), &websocket.DialOptions{
		OnPingReceived: func(context.Context, []byte) bool {
			select {
			case pings <- struct{}{}:
			default:
			}
			return true
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	readCtx := c.CloseRead(context.Background())
	for range 3 {
		select {
		case <-pings:
		case <-time.After(5 * time.Second):
			t.Fatal("no keepalive ping")
		}
	}
	if readCtx.Err() != nil {
		t.Fatal("socket closed")
	}
	s.Close(session.Normal, "")
	<-readCtx.Done()
}

// TestDeadPeer: a peer that stops reading (so it answers no ping) is
// dropped PingTimeout after a ping, counted once; coder/websocket's Ping
// alone would leave it open.
func TestDeadPeer(t *testing.T) {
	s, m := newSession(session.Identity{}, session.Config{})
	ended := make(chan time.Time, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// PingTimeout also bounds the ping's own write (coder/websocket
		// drops the connection when a write outlives its context), so on
		// a starved machine a short one ends the connection from the
		// library's side before the keepalive can call it a dead peer.
		c, err := Accept(w, r, s, Config{PingInterval: 50 * time.Millisecond, PingTimeout: time.Second}, nil, discard, m)
		if err == nil {
			c.Run(context.Background(), nil)
			ended <- time.Now()
		}
	}))
	defer srv.Close()
	start := time.Now()
	c, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow() // never read: pings stay unanswered
	select {
	case at := <-ended:
		t.Logf("ended after %s", at.Sub(start))
		if d := at.Sub(start); d < time.Second {
			t.Fatalf("closed after %s, before a ping could time out", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a peer that answers no ping is still served")
	}
	if n := testutil.ToFloat64(m.DeadPeerCloses); n != 1 {
		t.Fatalf("dead peer closes %v", n)
	}
}

// TestBackedUpWriteIsSlowConsumer: a peer that reads nothing while frames
// back up (the queue is far from full) is a slow consumer once a write has
// waited WriteTimeout: when it reads again it gets every whole frame in
// flight and then 1013, never a frame cut in the middle or a dropped
// connection.
func TestBackedUpWriteIsSlowConsumer(t *testing.T) {
	s, m := newSession(session.Identity{}, session.Config{QueueSize: 4000})
	c := serve(t, s, m, Config{PingInterval: 50 * time.Millisecond, PingTimeout: 200 * time.Millisecond, WriteTimeout: 500 * time.Millisecond})
	c.SetReadLimit(-1)
	frame := []byte(`"` + strings.Repeat("x", 16<<10) + `"`)
	for range 1000 { // 16 MiB: more than the kernel buffers hold
		if !s.TrySend(sendq.Entry{Data: frame}) {
			break
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(m.SlowConsumerCloses) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a backed-up socket was not closed as a slow consumer")
		}
		time.Sleep(10 * time.Millisecond) // poll interval, bounded by the deadline
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	for err == nil {
		_, _, err = c.Read(ctx)
	}
	if websocket.CloseStatus(err) != websocket.StatusTryAgainLater {
		t.Fatalf("ended with %v, want close 1013", err)
	}
	if n := testutil.ToFloat64(m.DeadPeerCloses); n != 0 {
		t.Fatalf("dead peer closes %v, want 0", n)
	}
}

// TestFramesAroundBufferSizes: frames shorter than, as long as and far
// longer than the connection's buffers travel whole both ways: the server's
// frames as one message each (or joined in batch mode), a client message
// of nearly wire.MaxFrameSize read whole (its answer proves it parsed).
func TestFramesAroundBufferSizes(t *testing.T) {
	sizes := []int{1, writeBufSize - 1, writeBufSize, writeBufSize + 1, readBufSize + 1, 4096, 70000}
	for _, batch := range []bool{false, true} {
		s, m := newSession(session.Identity{}, session.Config{QueueSize: 16})
		var want []string
		for i, n := range sizes {
			f := fmt.Sprintf(`{"seq":%d,"pad":"%s"}`, i, strings.Repeat("x", n))
			want = append(want, f)
			if !s.TrySend(sendq.Entry{Data: []byte(f)}) {
				t.Fatal("queue refused")
			}
		}
		c := serve(t, s, m, Config{Batch: batch})
		c.SetReadLimit(-1)
		var got []string
		for len(got) < len(want) {
			got = append(got, strings.Split(read(t, c), "\n")...)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("batch=%v: frame %d: got %d bytes, want %d", batch, i, len(got[i]), len(want[i]))
			}
		}
		big := `{"event":"ping"` + strings.Repeat(" ", wire.MaxFrameSize-32) + `}`
		if err := c.Write(context.Background(), websocket.MessageText, []byte(big)); err != nil {
			t.Fatal(err)
		}
		if f := read(t, c); !strings.Contains(f, `"pong"`) {
			t.Fatalf("batch=%v: answer to a %d-byte ping: %s", batch, len(big), f)
		}
	}
}

// TestBytesAfterRequest: a client frame sent in the same write as the
// upgrade request (before the 101 came back) is read, not lost.
func TestBytesAfterRequest(t *testing.T) {
	s, m := newSession(session.Identity{}, session.Config{})
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		if c, err := Accept(w, r, s, Config{}, nil, discard, m); err == nil {
			c.Run(context.Background(), nil)
		}
	}))
	defer srv.Close()
	nc, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	ping := []byte(`{"event":"ping"}`)
	// A masked text frame with a zero mask key: the payload as is.
	frame := append([]byte{0x81, 0x80 | byte(len(ping)), 0, 0, 0, 0}, ping...)
	if _, err := nc.Write(append([]byte(req), frame...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	head := make([]byte, 2)
	if _, err := io.ReadFull(br, head); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, head[1]&0x7f)
	if _, err := io.ReadFull(br, payload); err != nil {
		t.Fatal(err)
	}
	if head[0] != 0x81 || !strings.Contains(string(payload), `"pong"`) {
		t.Fatalf("got frame %x %q, want the pong", head, payload)
	}
	s.Abort()
	<-done
}
