package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"orderpush/pkg/pgtest"
	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
	"orderpush/scripts/launch"
)

// merchant is one merchant of the test with its sockets and what they are
// due to receive.
type merchant struct {
	id      string
	orders  int                        // orders to place
	sockets []*socket                  // spread over the gateways
	placed  map[string]json.RawMessage // orderNo -> 201 body
	frames  [][]byte                   // the frames every socket got, by seq-1
}

// TestOrdersReachExactlyTheirMerchantsSockets is issue 2's acceptance test:
// with one orderapi (on SQLite, the embedded default) and two gateway
// replicas on one Redis, orders placed over HTTP reach every socket of their
// merchant on both replicas, in seq order, with the right orderSum and
// order, and nothing reaches another merchant.
func TestOrdersReachExactlyTheirMerchantsSockets(t *testing.T) {
	orderPath(t, "")
}

// TestOrdersReachExactlyTheirMerchantsSocketsPostgres is the same with the
// order API on PostgreSQL, as in production.
func TestOrdersReachExactlyTheirMerchantsSocketsPostgres(t *testing.T) {
	orderPath(t, pgtest.NewDatabase(t))
}

func orderPath(t *testing.T, databaseURL string) {
	sys := launch.StartSystemT(t, launch.SystemSpec{Bins: bins, RedisURL: redistest.SharedURL(t), DatabaseURL: databaseURL})
	service := sys.Token(token.RoleService, "e2e")
	gwA, gwB := sys.Gateways[0], sys.Gateways[1]
	if gwA.Node == gwB.Node {
		t.Fatalf("both gateways have node %q", gwA.Node)
	}

	ms := []*merchant{
		{id: redistest.Unique("e2e-a"), orders: 12},
		{id: redistest.Unique("e2e-b"), orders: 7},
		{id: redistest.Unique("e2e-c"), orders: 4},
	}
	// Four sockets per merchant, two on each replica, opened in turn so the
	// replicas hold a mix of merchants.
	for i := range 4 {
		for _, m := range ms {
			gw := sys.Gateways[i%2]
			s := dial(t, gw, sys.Token(token.RoleMerchant, m.id), fmt.Sprintf("%s/%d@%s", m.id, i, gw.Name))
			checkHello(t, s, m.id, 0, 0)
			m.sockets = append(m.sockets, s)
		}
	}

	t.Run("place", func(t *testing.T) { placeOrders(t, sys, ms) })
	if t.Failed() {
		t.FailNow()
	}

	t.Run("deliver", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		for _, m := range ms {
			for _, s := range m.sockets {
				receiveOrders(t, ctx, m, s)
			}
		}
		// Nothing else is queued on any socket, in particular nothing of
		// another merchant.
		for _, m := range ms {
			for _, s := range m.sockets {
				s.quiet(t, ctx)
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("event log holds the same bytes", func(t *testing.T) {
		for _, m := range ms {
			code, body := call(t, http.MethodGet, fmt.Sprintf("%s/merchants/%s/events?after=0", sys.OrderAPI.URL, m.id), service, "")
			if code != http.StatusOK {
				t.Fatalf("events of %s: %d %s", m.id, code, body)
			}
			var got struct {
				Events []json.RawMessage `json:"events"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("events of %s: %v", m.id, err)
			}
			if len(got.Events) != m.orders {
				t.Fatalf("events of %s: %d, want %d", m.id, len(got.Events), m.orders)
			}
			for i, e := range got.Events {
				if string(compact(t, e)) != string(compact(t, m.frames[i])) {
					t.Errorf("%s seq %d: event log %s, socket got %s", m.id, i+1, e, m.frames[i])
				}
			}
		}
	})

	// A socket opened after the orders starts from the current state. (Not
	// a subtest: the sockets must outlive it.)
	for _, m := range ms {
		for _, gw := range sys.Gateways {
			s := dial(t, gw, sys.Token(token.RoleMerchant, m.id), fmt.Sprintf("%s/late@%s", m.id, gw.Name))
			checkHello(t, s, m.id, uint64(m.orders), int64(m.orders))
			m.sockets = append(m.sockets, s)
		}
	}

	t.Run("summary", func(t *testing.T) {
		for _, m := range ms {
			checkSummary(t, sys, m, int64(m.orders), uint64(m.orders))
		}
	})

	t.Run("process", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		m := ms[0]
		tok := sys.Token(token.RoleMerchant, m.id)
		nos := orderNos(m)

		// Over HTTP: every socket of the merchant sees order.processed.
		code, body := call(t, http.MethodPost, sys.OrderAPI.URL+"/orders/"+nos[0]+"/process", tok, "")
		if code != http.StatusOK {
			t.Fatalf("process %s: %d %s", nos[0], code, body)
		}
		checkProcessed(t, body, nos[0])
		seq, sum := uint64(m.orders+1), int64(m.orders-1)
		for _, s := range m.sockets {
			expectProcessed(t, ctx, s, seq, sum, body)
		}
		// A second call changes nothing and emits nothing.
		code, again := call(t, http.MethodPost, sys.OrderAPI.URL+"/orders/"+nos[0]+"/process", tok, "")
		if code != http.StatusOK || !jsonEqual(again, body) {
			t.Errorf("second process: %d %s, want 200 and the same order", code, again)
		}

		// Over a socket: the gateway forwards the frame with the socket's
		// token; both replicas' sockets see the event.
		m.sockets[1].send(t, ctx, fmt.Sprintf(`{"event":"process","data":{"orderNo":%q}}`, nos[1]))
		seq, sum = seq+1, sum-1
		var first []byte
		for _, s := range m.sockets {
			f := expectProcessed(t, ctx, s, seq, sum, nil)
			var d orderData
			_ = json.Unmarshal(f.Data, &d)
			checkProcessed(t, d.Order, nos[1])
			if first == nil {
				first = f.raw
			} else if string(f.raw) != string(first) {
				t.Errorf("%s: frame %s differs from another socket's %s", s.name, f.raw, first)
			}
		}
		for _, m := range ms {
			for _, s := range m.sockets {
				s.quiet(t, ctx)
			}
		}
		checkSummary(t, sys, m, sum, seq)
	})

	t.Run("refused before upgrade", func(t *testing.T) {
		for _, tc := range []struct {
			tok  string
			code int
			want string
		}{
			{"not-a-jwt", http.StatusUnauthorized, "unauthorized"},
			{launch.MintToken([]byte(launch.NewSecret()), token.RoleMerchant, ms[0].id, time.Hour), http.StatusUnauthorized, "unauthorized"},
			{sys.Token(token.RoleMember, "u1"), http.StatusForbidden, "forbidden"},
		} {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			c, resp, err := websocket.Dial(ctx, gwA.WS()+"?token="+tc.tok, nil)
			cancel()
			if err == nil {
				c.CloseNow()
				t.Errorf("token %.20s...: upgraded, want %d", tc.tok, tc.code)
				continue
			}
			if resp == nil || resp.StatusCode != tc.code {
				t.Errorf("token %.20s...: %v, want %d", tc.tok, err, tc.code)
				continue
			}
			var e struct {
				Error wire.ErrorData `json:"error"`
			}
			b := make([]byte, 4096)
			n, _ := resp.Body.Read(b)
			if json.Unmarshal(b[:n], &e) != nil || e.Error.Code != tc.want {
				t.Errorf("token %.20s...: body %q, want error code %s", tc.tok, b[:n], tc.want)
			}
		}
	})
}

func checkHello(t *testing.T, s *socket, merchantID string, seq uint64, sum int64) {
	t.Helper()
	h := s.hello
	if h.MerchantID != merchantID || h.Node != s.gw.Node || h.Seq != seq || h.OrderSum != sum || h.ConnID == "" {
		t.Errorf("%s: hello %+v, want merchant %s node %s seq %d orderSum %d and a connId", s.name, h, merchantID, s.gw.Node, seq, sum)
	}
}

// placeOrders places every merchant's orders at once: three concurrent
// members per merchant, all merchants together.
func placeOrders(t *testing.T, sys *launch.System, ms []*merchant) {
	prices := []struct{ in, out string }{{"36", "36"}, {"36.50", "36.5"}, {"0", "0"}, {"12.34", "12.34"}, {"1e2", "100"}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range ms {
		m.placed = map[string]json.RawMessage{}
		const workers = 3
		for w := range workers {
			user := fmt.Sprintf("u%d", w+1)
			tok := sys.Token(token.RoleMember, user)
			wg.Go(func() {
				for i := w; i < m.orders; i += workers {
					p := prices[i%len(prices)]
					body := fmt.Sprintf(`{"merchantId":%q,"date":"2022-06-22","price":%s}`, m.id, p.in)
					code, resp := call(t, http.MethodPost, sys.OrderAPI.URL+"/orders", tok, body)
					if code != http.StatusCreated {
						t.Errorf("POST /orders %s: %d %s", body, code, resp)
						continue
					}
					var o map[string]any
					if err := json.Unmarshal(resp, &o); err != nil {
						t.Errorf("POST /orders: body %q: %v", resp, err)
						continue
					}
					no, _ := o["orderNo"].(string)
					price, _ := json.Marshal(o["price"])
					if o["merchantId"] != m.id || o["userId"] != user || o["date"] != "2022-06-22" ||
						o["status"] != wire.StatusPending || string(price) != p.out || !strings.HasPrefix(no, user) || !wire.ValidOrderNo(no) {
						t.Errorf("POST /orders %s: body %s", body, resp)
					}
					mu.Lock()
					if _, dup := m.placed[no]; dup {
						t.Errorf("order number %s given twice", no)
					}
					m.placed[no] = resp
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
}

// receiveOrders reads m's orders on s and checks each against the HTTP
// answers, and that every socket of m got the very same bytes.
func receiveOrders(t *testing.T, ctx context.Context, m *merchant, s *socket) {
	t.Helper()
	seen := map[string]bool{}
	for i := range m.orders {
		f := s.next(t, ctx)
		want := uint64(i + 1)
		if f.Event != wire.EventOrder || f.Seq != want {
			t.Fatalf("%s: frame %d is %s, want an order with seq %d", s.name, i+1, f.raw, want)
		}
		var d orderData
		if err := json.Unmarshal(f.Data, &d); err != nil {
			t.Fatalf("%s: data of %s: %v", s.name, f.raw, err)
		}
		var o wire.Order
		if err := json.Unmarshal(d.Order, &o); err != nil {
			t.Fatalf("%s: order of %s: %v", s.name, f.raw, err)
		}
		if d.OrderSum != int64(want) || d.Msg != wire.NewOrderMsg {
			t.Errorf("%s: seq %d has orderSum %d msg %q, want %d and %q", s.name, want, d.OrderSum, d.Msg, want, wire.NewOrderMsg)
		}
		placed, ok := m.placed[o.OrderNo]
		switch {
		case o.MerchantID != m.id:
			t.Errorf("%s: got merchant %s's order %s", s.name, o.MerchantID, o.OrderNo)
		case !ok:
			t.Errorf("%s: order %s was never placed", s.name, o.OrderNo)
		case seen[o.OrderNo]:
			t.Errorf("%s: order %s twice", s.name, o.OrderNo)
		case !jsonEqual(d.Order, placed):
			t.Errorf("%s: order %s, the 201 body was %s", s.name, d.Order, placed)
		}
		seen[o.OrderNo] = true
		if len(m.frames) <= i {
			m.frames = append(m.frames, f.raw)
		} else if string(m.frames[i]) != string(f.raw) {
			t.Errorf("%s: seq %d is %s, another socket got %s", s.name, want, f.raw, m.frames[i])
		}
	}
}

// expectProcessed reads the next frame of s, which must be order.processed
// with seq and sum (and, when given, the order body).
func expectProcessed(t *testing.T, ctx context.Context, s *socket, seq uint64, sum int64, order []byte) frame {
	t.Helper()
	f := s.next(t, ctx)
	var d orderData
	if f.Event != wire.EventOrderProcessed || f.Seq != seq || json.Unmarshal(f.Data, &d) != nil || d.OrderSum != sum {
		t.Fatalf("%s: got %s, want order.processed seq %d orderSum %d", s.name, f.raw, seq, sum)
	}
	if order != nil && !jsonEqual(d.Order, order) {
		t.Errorf("%s: processed order %s, the 200 body was %s", s.name, d.Order, order)
	}
	return f
}

func checkProcessed(t *testing.T, body []byte, orderNo string) {
	t.Helper()
	var o wire.Order
	if err := json.Unmarshal(body, &o); err != nil || o.OrderNo != orderNo || o.Status != wire.StatusProcessed {
		t.Errorf("processed order %s: %s (%v)", orderNo, body, err)
	}
}

// checkSummary polls the summary until it matches (online is current within
// 2 s, PROTOCOL.md).
func checkSummary(t *testing.T, sys *launch.System, m *merchant, sum int64, seq uint64) {
	t.Helper()
	tok := sys.Token(token.RoleMerchant, m.id)
	// No client here acks or marks seen, so every pending order is
	// undelivered and unseen.
	want := fmt.Sprintf(`{"merchantId":%q,"orderSum":%d,"seq":%d,"online":%d,"undelivered":%d,"unseen":%d}`,
		m.id, sum, seq, len(m.sockets), sum, sum)
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := call(t, http.MethodGet, fmt.Sprintf("%s/merchants/%s/summary", sys.OrderAPI.URL, m.id), tok, "")
		if code == http.StatusOK && jsonEqual(body, []byte(want)) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("summary of %s: %d %s, want %s", m.id, code, body, want)
			return
		}
		time.Sleep(100 * time.Millisecond) // poll interval, bounded by the deadline
	}
}

// orderNos lists m's order numbers in seq order.
func orderNos(m *merchant) []string {
	var out []string
	for _, raw := range m.frames {
		var f struct {
			Data struct {
				Order wire.Order `json:"order"`
			} `json:"data"`
		}
		_ = json.Unmarshal(raw, &f)
		out = append(out, f.Data.Order.OrderNo)
	}
	return out
}
