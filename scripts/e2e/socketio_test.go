package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"orderpush/pkg/wire"
	"orderpush/scripts/prodstack"
)

// TestSocketIO drives the real socket.io-client (npm, pinned in
// scripts/sioclient) against the production-like stack: three gateways
// behind nginx with round robin and no sticky sessions (PROTOCOL.md "Other
// transports"). The seed's client code connects unchanged: io(url +
// "?token=..."), socket.on("order", ...).
func TestSocketIO(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	s, err := prodstack.Start(ctx, prodstack.Options{Bins: bins})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range append([]*prodstack.Process{s.Nginx}, s.Gateways...) {
				t.Logf("--- %s ---\n%s", p.Name, p.Proc.LogTail(3000))
			}
		}
		if err := s.Close(); err != nil {
			t.Logf("close: %v", err)
		}
	})
	if len(s.Gateways) < 3 {
		t.Fatalf("the stack has %d gateways, want 3", len(s.Gateways))
	}
	member := s.Token("member", "u1001")

	for _, tc := range []struct {
		name      string
		opts      map[string]any
		first     string // transport of the connect
		upgrade   bool
		authToken bool // token in CONNECT's auth, not in the URL
	}{
		{name: "default", opts: map[string]any{}, first: "polling", upgrade: true},
		{name: "websocket", opts: map[string]any{"transports": []string{"websocket"}}, first: "websocket", authToken: true},
		{name: "polling", opts: map[string]any{"transports": []string{"polling"}}, first: "polling"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mid := "sio" + tc.name + fmt.Sprint(time.Now().UnixNano()%1e9)
			if err := s.RegisterMerchants(ctx, mid); err != nil {
				t.Fatal(err)
			}
			tok := s.Token("merchant", mid)
			u := s.URL + "?token=" + url.QueryEscape(tok)
			if tc.authToken {
				u = s.URL
				tc.opts["auth"] = map[string]string{"token": tok}
			}
			c := startSIO(t, tc.name, u, tc.opts)
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			upgraded := false
			conn := c.until(t, ctx, "connect", func(e sioEvent) bool {
				upgraded = upgraded || e.Type == "upgrade"
				return e.Type == "connect"
			})
			if conn.Transport != tc.first && !(upgraded && conn.Transport == "websocket") {
				t.Errorf("connected over %s, want %s", conn.Transport, tc.first)
			}
			hello := c.until(t, ctx, "hello", isEvent("hello"))
			var hd wire.HelloData
			if err := json.Unmarshal(hello.arg(t).Data, &hd); err != nil || hd.MerchantID != mid || hd.Seq != 0 || hd.OrderSum != 0 || hd.ConnID != conn.ID {
				t.Fatalf("hello = %s (socket id %s)", hello.raw, conn.ID)
			}
			if len(hello.Args) != 2 || string(hello.Args[1]) != `"0"` {
				t.Errorf("hello does not carry the offset \"0\": %s", hello.raw)
			}

			var orders []wire.Order
			for i := 1; i <= 2; i++ {
				orders = append(orders, placeOrder(t, s, member, mid))
				e := c.until(t, ctx, fmt.Sprintf("order %d", i), func(e sioEvent) bool {
					upgraded = upgraded || e.Type == "upgrade"
					return isEvent("order")(e)
				})
				a := e.arg(t)
				var d orderData
				if err := json.Unmarshal(a.Data, &d); err != nil {
					t.Fatal(err)
				}
				var o wire.Order
				if err := json.Unmarshal(d.Order, &o); err != nil {
					t.Fatal(err)
				}
				if a.Seq != uint64(i) || a.TS == 0 || d.OrderSum != int64(i) || d.Msg != wire.NewOrderMsg || o.OrderNo != orders[i-1].OrderNo || o.MerchantID != mid {
					t.Fatalf("order %d = %s", i, e.raw)
				}
				if len(e.Args) != 2 || string(e.Args[1]) != fmt.Sprintf(`"%d"`, i) {
					t.Errorf("order %d does not carry its seq as the offset: %s", i, e.raw)
				}
			}

			// process with an acknowledgement: ok, then order.processed.
			c.send(t, map[string]any{"emit": "process", "arg": map[string]string{"orderNo": orders[0].OrderNo}, "ack": true, "tag": "p1"})
			var ack, processed sioEvent
			for ack.Type == "" || processed.Type == "" {
				e := c.until(t, ctx, "ack p1 and order.processed", func(e sioEvent) bool {
					return e.Type == "ack" || isEvent(wire.EventOrderProcessed)(e)
				})
				if e.Type == "ack" {
					ack = e
				} else {
					processed = e
				}
			}
			if ack.Tag != "p1" || !jsonEqual(ack.Res, []byte(`{"ok":true}`)) {
				t.Fatalf("process ack = %s", ack.raw)
			}
			var pd orderData
			if a := processed.arg(t); a.Seq != 3 || json.Unmarshal(a.Data, &pd) != nil || pd.OrderSum != 1 {
				t.Fatalf("order.processed = %s", processed.raw)
			}
			// A refusal reaches the callback as the error object.
			c.send(t, map[string]any{"emit": "process", "arg": map[string]string{"orderNo": "nope"}, "ack": true, "tag": "p2"})
			ack = c.until(t, ctx, "ack p2", isType("ack"))
			var res struct {
				OK    bool           `json:"ok"`
				Error wire.ErrorData `json:"error"`
			}
			if json.Unmarshal(ack.Res, &res) != nil || res.OK || res.Error.Code == "" {
				t.Fatalf("process of a malformed order number: ack %s", ack.raw)
			}
			// ping without a callback answers with a pong event.
			c.send(t, map[string]any{"emit": "ping"})
			c.until(t, ctx, "pong", isEvent(wire.EventPong))
			if tc.upgrade && !upgraded {
				c.until(t, ctx, "upgrade to websocket", func(e sioEvent) bool { return e.Type == "upgrade" && e.Transport == "websocket" })
			}
		})
	}

	t.Run("refusals", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		for _, tc := range []struct{ name, tok, code string }{
			{"bad token", "not-a-jwt", "unauthorized"},
			{"member token", member, "forbidden"},
		} {
			c := startSIO(t, tc.name, s.URL+"?token="+url.QueryEscape(tc.tok), map[string]any{})
			e := c.until(t, ctx, "connect_error", func(e sioEvent) bool {
				if e.Type == "connect" {
					t.Fatalf("%s: connected", tc.name)
				}
				return e.Type == "connect_error"
			})
			var d wire.ErrorData
			if e.Message != tc.code || json.Unmarshal(e.Data, &d) != nil || d.Code != tc.code {
				t.Errorf("%s: connect_error %s, want message %s", tc.name, e.raw, tc.code)
			}
		}
	})

	// A gateway killed mid-stream: both clients (default options, and
	// polling only, whose requests spread over all three gateways) reconnect
	// through nginx to another replica and recover every missed event, no
	// duplicate, socket.recovered === true.
	t.Run("recovery", func(t *testing.T) {
		mid := "siorec" + fmt.Sprint(time.Now().UnixNano()%1e9)
		if err := s.RegisterMerchants(ctx, mid); err != nil {
			t.Fatal(err)
		}
		tok := s.Token("merchant", mid)
		u := s.URL + "?token=" + url.QueryEscape(tok)
		clients := []*sioClient{
			startSIO(t, "default", u, map[string]any{}),
			startSIO(t, "polling", u, map[string]any{"transports": []string{"polling"}}),
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		rx := make([]*received, len(clients))
		for i, c := range clients {
			rx[i] = &received{seen: map[uint64]int{}}
			rx[i].collect(t, ctx, c, 0)
		}
		total := uint64(0)
		placeN := func(n int) {
			for range n {
				placeOrder(t, s, member, mid)
				total++
			}
		}
		placeN(3)
		for i, c := range clients {
			rx[i].collect(t, ctx, c, total)
		}
		killed := map[string]bool{}
		for i, c := range clients {
			node := rx[i].node
			if killed[node] {
				continue
			}
			gw := s.Gateway(node)
			if gw == nil {
				t.Fatalf("%s is on %q, not one of the stack's gateways", c.name, node)
			}
			t.Logf("killing %s (holds %s)", node, c.name)
			gw.Proc.Kill()
			killed[node] = true
			placeN(3) // while the client is away
			for j, c := range clients {
				rx[j].collect(t, ctx, c, total)
			}
			if rx[i].reconnects == 0 || !rx[i].recovered {
				t.Fatalf("%s: after %s was killed: reconnects %d, recovered %v", c.name, node, rx[i].reconnects, rx[i].recovered)
			}
		}
		placeN(2)
		for i, c := range clients {
			rx[i].collect(t, ctx, c, total)
			for seq := uint64(1); seq <= total; seq++ {
				if rx[i].seen[seq] != 1 {
					t.Errorf("%s: seq %d seen %d times", c.name, seq, rx[i].seen[seq])
				}
			}
			t.Logf("%s: %d events once each, %d reconnects, all recovered", c.name, total, rx[i].reconnects)
		}
	})
}

// received is what one client got during the recovery test.
type received struct {
	seen       map[uint64]int
	max        uint64
	node       string // gateway of the last hello
	connects   int
	reconnects int
	recovered  bool // at least one reconnect, and every one came back recovered
}

// collect reads until the client saw every seq up to upto (and, for 0,
// until its first hello). A duplicate, a gap or a resync fails the test.
func (r *received) collect(t *testing.T, ctx context.Context, c *sioClient, upto uint64) {
	t.Helper()
	for r.max < upto || r.node == "" {
		e := c.next(t, ctx)
		switch {
		case e.Type == "connect":
			r.connects++
			if r.connects > 1 {
				r.recovered = (r.reconnects == 0 || r.recovered) && e.Recovered
				r.reconnects++
				if !e.Recovered {
					t.Errorf("%s: reconnect %d not recovered: %s", c.name, r.reconnects, e.raw)
				}
			}
		case e.Type == "event" && e.Event == wire.EventHello:
			var hd wire.HelloData
			if err := json.Unmarshal(e.arg(t).Data, &hd); err != nil {
				t.Fatal(err)
			}
			r.node = hd.Node
		case e.Type == "event" && e.Event == wire.EventResync:
			t.Fatalf("%s: resync: %s", c.name, e.raw)
		case e.Type == "event" && e.Event == wire.EventOrder:
			a := e.arg(t)
			r.seen[a.Seq]++
			if r.seen[a.Seq] > 1 {
				t.Fatalf("%s: seq %d twice", c.name, a.Seq)
			}
			if a.Seq != r.max+1 {
				t.Fatalf("%s: seq %d after %d", c.name, a.Seq, r.max)
			}
			r.max = a.Seq
		}
	}
}

// placeOrder places an order through nginx.
func placeOrder(t *testing.T, s *prodstack.Stack, member, mid string) wire.Order {
	t.Helper()
	status, body := call(t, http.MethodPost, s.API()+"/orders", member,
		fmt.Sprintf(`{"merchantId":%q,"date":"2022-06-22","price":36}`, mid))
	var o wire.Order
	if status != http.StatusCreated || json.Unmarshal(body, &o) != nil {
		t.Fatalf("POST /orders: %d %s", status, body)
	}
	return o
}
