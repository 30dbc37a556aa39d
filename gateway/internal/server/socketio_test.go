package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"orderpush/gateway/internal/metrics"
	"orderpush/pkg/config"
	"orderpush/pkg/poll"
	"orderpush/pkg/presence"
	"orderpush/pkg/rediskey"
	"orderpush/pkg/redistest"
	"orderpush/pkg/stream/publish"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// sioWS is a socket.io client over the websocket transport, by hand:
// Engine.IO pings are answered as they come.
type sioWS struct {
	t  *testing.T
	ws *websocket.Conn
}

// sioConnect opens Engine.IO over websocket and sends CONNECT with the
// token in auth; it returns the client and the CONNECT's answer.
func sioConnect(t *testing.T, base, tok string) (*sioWS, string) {
	t.Helper()
	return sioConnectWith(t, base, tok, nil)
}

// sioConnectWith is sioConnect with the websocket's dial options.
func sioConnectWith(t *testing.T, base, tok string, opts *websocket.DialOptions) (*sioWS, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/socket.io/?EIO=4&transport=websocket", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.CloseNow() })
	c := &sioWS{t: t, ws: ws}
	if open := c.next(); !strings.HasPrefix(open, "0{") {
		t.Fatalf("open packet %q", open)
	}
	auth, _ := json.Marshal(map[string]string{"token": tok})
	c.send("40" + string(auth))
	return c, c.next()
}

func (c *sioWS) send(pkt string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(pkt)); err != nil {
		c.t.Fatalf("send %q: %v", pkt, err)
	}
}

// next is the next packet other than a ping (answered); "" when the
// connection ended.
func (c *sioWS) next() string {
	c.t.Helper()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, b, err := c.ws.Read(ctx)
		expired := ctx.Err() != nil
		cancel()
		if err != nil {
			if expired {
				c.t.Fatal("nothing within 10 s")
			}
			return ""
		}
		if string(b) == "2" {
			c.send("3")
			continue
		}
		return string(b)
	}
}

// TestSocketIOLimits: a socket.io client is a session like any other.
// Every event counts against CLIENT_MSG_RATE: over the burst, an event
// without acknowledgement is dropped (one rate_limited error event a
// second), an acknowledged one gets the rate_limited error in its
// callback, and a flood ends the connection and counts as one.
func TestSocketIOLimits(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	g := startGW(t, url, func(c *Config) { c.ClientMsgRate = config.Rate{N: 1, Per: time.Hour} }) // burst 2, no refill
	mid := redistest.Unique("m")
	c, ans := sioConnect(t, g.URL, merchantToken(t, mid))
	var connected struct{ SID, PID string }
	if !strings.HasPrefix(ans, "40{") || json.Unmarshal([]byte(ans[2:]), &connected) != nil || connected.SID == "" {
		t.Fatalf("CONNECT answer %q", ans)
	}
	hello := c.next()
	if !strings.HasPrefix(hello, `42["hello",`) || !strings.Contains(hello, `"connId":"`+connected.SID+`"`) {
		t.Fatalf("hello %q (socket id %s)", hello, connected.SID)
	}
	if n := g.metric(g.srv.m.ConnectionsOpen.WithLabelValues(metrics.TransportSocketIO)); n != 1 {
		t.Fatalf("socket.io connections open %v", n)
	}
	if g.srv.presence.Len() != 1 {
		t.Fatalf("presence holds %d connections", g.srv.presence.Len())
	}

	c.send(`421["ping"]`) // within the burst, acknowledged
	if got := c.next(); got != `431[{"ok":true}]` {
		t.Fatalf("ack of ping: %q", got)
	}
	c.send(`42["ping"]`) // within the burst, answered with an event
	if got := c.next(); !strings.HasPrefix(got, `42["pong"`) {
		t.Fatalf("pong: %q", got)
	}
	c.send(`422["ping"]`) // over it: the callback gets the refusal
	got := c.next()
	var ack []struct {
		OK    bool
		Error wire.ErrorData
	}
	if !strings.HasPrefix(got, "432") || json.Unmarshal([]byte(got[3:]), &ack) != nil || len(ack) != 1 || ack[0].OK || ack[0].Error.Code != wire.CodeRateLimited {
		t.Fatalf("ack over the limit: %q", got)
	}
	before := g.metric(g.srv.m.FloodCloses)
	for range 10 {
		c.send(`42["ping"]`)
	}
	// Dropped, not answered with pongs; the flood rules end the
	// connection (refusals reaching twice the burst).
	for {
		p := c.next()
		if p == "" {
			break
		}
		if strings.HasPrefix(p, `42["pong"`) {
			t.Fatalf("a ping over the limit was answered: %q", p)
		}
	}
	if g.metric(g.srv.m.FloodCloses) != before+1 {
		t.Fatal("the flood close was not counted")
	}
	poll.Within(t, 10*time.Second, "the flooding socket.io connection gone", func() error {
		if n := g.metric(g.srv.m.ConnectionsOpen.WithLabelValues(metrics.TransportSocketIO)); n != 0 {
			return fmt.Errorf("%v socket.io connections open", n)
		}
		if n := g.srv.presence.Len(); n != 0 {
			return fmt.Errorf("presence holds %d", n)
		}
		return nil
	})
}

// TestSocketIOSlowConsumer: a socket.io client over websocket that reads
// nothing while events back up is a slow consumer, counted once: when it
// reads again it gets whole events in order (the gathered writes never cut
// one), then the Engine.IO session's close.
func TestSocketIOSlowConsumer(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	g := startGW(t, url)
	mid := redistest.Unique("m")
	p := newPublisher(t, newRedis(t, url), mid)
	// A tiny receive buffer, set before connect, so the gateway's writes
	// back up instead of vanishing into kernel buffers.
	small := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8192)
		})
		return errors.Join(err, serr)
	}}
	c, ans := sioConnectWith(t, g.URL, merchantToken(t, mid),
		&websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: small.DialContext}}})
	if !strings.HasPrefix(ans, "40{") {
		t.Fatalf("CONNECT answer %q", ans)
	}
	if hello := c.next(); !strings.HasPrefix(hello, `42["hello",`) {
		t.Fatalf("hello %q", hello)
	}
	c.ws.SetReadLimit(-1)
	big := strings.Repeat("x", 4000)
	for range 2000 {
		seq, sum, _ := p.next()
		o := wire.Order{OrderNo: fmt.Sprintf("u1%017d", seq), MerchantID: mid, UserID: "u1", Date: "2022-06-22", Status: "pending", CreatedAt: time.Now()}
		fr := wire.MustEncode(wire.EventOrder, seq, time.Now().UnixMilli(), wire.OrderData{OrderSum: sum, Msg: big, Order: o})
		if _, err := p.store.Publish(context.Background(), mid, seq, sum, fr); err != nil {
			t.Fatal(err)
		}
	}
	poll.Within(t, 30*time.Second, "the socket.io client closed as a slow consumer", func() error {
		if n := g.metric(g.srv.m.SlowConsumerCloses); n == 0 {
			return errors.New("no slow consumer close")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var last uint64
	for {
		_, b, err := c.ws.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Fatalf("after %d events: ended with %v, want the Engine.IO session's close", last, err)
			}
			break
		}
		var ev []json.RawMessage
		var f struct{ Seq uint64 }
		if !strings.HasPrefix(string(b), `42["order",`) || json.Unmarshal(b[2:], &ev) != nil || len(ev) != 3 || json.Unmarshal(ev[1], &f) != nil {
			t.Fatalf("after event %d: packet %.80q (%d bytes)", last, b, len(b))
		}
		if f.Seq != last+1 {
			t.Fatalf("event %d after %d", f.Seq, last)
		}
		last = f.Seq
	}
	if last == 0 || last == 2000 {
		t.Fatalf("%d events before the close: the client was not backed up", last)
	}
	if n := g.metric(g.srv.m.SlowConsumerCloses); n != 1 {
		t.Fatalf("slow consumer closes %v, want 1", n)
	}
}

// TestSocketIODrainAndNotice: a notice for the socket.io client's
// connection id reaches it as an event, and the drain ends the Engine.IO
// session (the client reconnects elsewhere and recovers).
func TestSocketIODrainAndNotice(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	g := startGW(t, url)
	c, ans := sioConnect(t, g.URL, merchantToken(t, redistest.Unique("m")))
	var connected struct{ SID string }
	if json.Unmarshal([]byte(strings.TrimPrefix(ans, "40")), &connected) != nil {
		t.Fatalf("CONNECT answer %q", ans)
	}
	c.next() // hello
	// Routed as the order API routes it: located in presence, published on
	// the replica's node channel.
	rdb := newRedis(t, url)
	loc, ok, err := presence.New(rdb, 0).Locate(context.Background(), connected.SID)
	if err != nil || !ok || loc.Node != g.Node {
		t.Fatalf("locate %s: %+v %v %v", connected.SID, loc, ok, err)
	}
	env, _ := json.Marshal(wire.Notice{ConnID: connected.SID, Frame: []byte(`{"event":"notice","data":{"msg":"hi"}}`)})
	if _, err := publish.New(rdb, publish.Options{}).PublishRaw(context.Background(), rediskey.NodeChannel(loc.Node), env); err != nil {
		t.Fatal(err)
	}
	if got := c.next(); got != `42["notice",{"data":{"msg":"hi"}}]` {
		t.Fatalf("notice event %q", got)
	}
	go g.Stop()
	if got := c.next(); got != "" {
		t.Fatalf("after the drain: %q", got)
	}
	// A new handshake is refused while draining.
	resp, err := http.Get(g.URL + "/socket.io/?EIO=4&transport=polling")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("handshake accepted during the drain")
		}
	}
}

// TestSocketIOTokenExpiry: the session ends when the token expires, as a
// WebSocket's does; a reconnect with the same token is then refused.
func TestSocketIOTokenExpiry(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	g := startGW(t, url)
	tok := mint(t, token.RoleMerchant, redistest.Unique("m"), 2*time.Second)
	c, ans := sioConnect(t, g.URL, tok)
	if !strings.HasPrefix(ans, "40{") {
		t.Fatalf("CONNECT answer %q", ans)
	}
	if hello := c.next(); !strings.HasPrefix(hello, `42["hello",`) {
		t.Fatalf("hello %q", hello)
	}
	if got := c.next(); got != "" {
		t.Fatalf("after the token expired: %q", got)
	}
	// Once past the verifier's leeway (5 s), a CONNECT with it is refused.
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, ans := sioConnect(t, g.URL, tok)
		_ = c.ws.CloseNow()
		if strings.HasPrefix(ans, "44{") && strings.Contains(ans, `"message":"unauthorized"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CONNECT with the expired token: %q", ans)
		}
		time.Sleep(500 * time.Millisecond) // poll interval, bounded by the deadline
	}
}
