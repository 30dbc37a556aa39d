package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"orderpush/pkg/pgtest"
	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
	"orderpush/scripts/launch"
)

// Receipts end to end over the order API's HTTP twins (POST
// /merchants/{id}/ack, POST /orders/{orderNo}/seen) with the real binaries
// and sockets on two gateways: deliveredAt only up to the acked seq, the
// first seen reaches every socket as exactly one order.seen, processing
// sets seenAt, and the summary counts what is left. The socket frames ack
// and seen, which the gateway forwards to these same endpoints, are
// receipts_socket_test.go's.
func TestReceiptsOverHTTP(t *testing.T) { receiptsOverHTTP(t, "") }

// TestReceiptsOverHTTPPostgres is the same on PostgreSQL.
func TestReceiptsOverHTTPPostgres(t *testing.T) { receiptsOverHTTP(t, pgtest.NewDatabase(t)) }

func receiptsOverHTTP(t *testing.T, databaseURL string) {
	r := startReceipts(t, databaseURL, "e2e-r")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	nos := r.placeAndReceive(t, ctx, 2)

	if code, body := call(t, http.MethodPost, r.api+"/merchants/"+r.m+"/ack", r.merchant, `{"seq":1}`); code != http.StatusNoContent {
		t.Fatalf("ack 1: %d %s", code, body)
	}
	if r.get(t, nos[0]).DeliveredAt == nil || r.get(t, nos[1]).DeliveredAt != nil {
		t.Fatalf("after ack 1: %+v %+v", r.get(t, nos[0]), r.get(t, nos[1]))
	}

	var seenAt string
	for i := range 2 {
		code, body := call(t, http.MethodPost, r.api+"/orders/"+nos[1]+"/seen", r.merchant, "")
		var o receiptOrder
		if code != http.StatusOK || json.Unmarshal(body, &o) != nil || o.SeenAt == nil {
			t.Fatalf("seen %d: %d %s", i, code, body)
		}
		seenAt = *o.SeenAt
	}
	r.expectSeen(t, ctx, 3, nos[1], seenAt)
	if code, body := call(t, http.MethodPost, r.api+"/orders/"+nos[0]+"/process", r.merchant, ""); code != http.StatusOK {
		t.Fatalf("process: %d %s", code, body)
	}
	// The second seen emitted nothing: the next frame is order.processed
	// (seq 4), which carries the seenAt processing set.
	r.expectProcessedSeen(t, ctx, 4)
	r.checkSummary(t, `{"orderSum":1,"undelivered":1,"unseen":0,"seq":4}`, 0)
}

// receiptsRig is one merchant with a socket on each of two gateways, for
// the receipts tests.
type receiptsRig struct {
	sys      *launch.System
	api      string // the order API's base URL
	m        string // the merchant
	merchant string // its token
	member   string // a member's token, to place orders
	sockets  []*socket
}

// receiptOrder is what the receipts tests read of an order.
type receiptOrder struct {
	OrderNo     string  `json:"orderNo"`
	DeliveredAt *string `json:"deliveredAt"`
	SeenAt      *string `json:"seenAt"`
}

func startReceipts(t *testing.T, databaseURL, prefix string) *receiptsRig {
	t.Helper()
	sys := launch.StartSystemT(t, launch.SystemSpec{Bins: bins, RedisURL: redistest.SharedURL(t), DatabaseURL: databaseURL})
	m := redistest.Unique(prefix)
	r := &receiptsRig{
		sys: sys, api: sys.OrderAPI.URL, m: m,
		merchant: sys.Token(token.RoleMerchant, m), member: sys.Token(token.RoleMember, "u1"),
	}
	for i, gw := range sys.Gateways[:2] {
		r.sockets = append(r.sockets, dial(t, gw, r.merchant, fmt.Sprintf("%s/%d@%s", m, i, gw.Name)))
	}
	return r
}

// place places an order for the merchant and returns its number.
func (r *receiptsRig) place(t *testing.T) string {
	t.Helper()
	code, body := call(t, http.MethodPost, r.api+"/orders", r.member, `{"merchantId":"`+r.m+`","date":"2022-06-22","price":1}`)
	var o receiptOrder
	if code != http.StatusCreated || json.Unmarshal(body, &o) != nil {
		t.Fatalf("place: %d %s", code, body)
	}
	return o.OrderNo
}

// placeAndReceive places n orders on a merchant without events so far and
// reads them on every socket: seq 1..n, without receipts.
func (r *receiptsRig) placeAndReceive(t *testing.T, ctx context.Context, n int) []string {
	t.Helper()
	var nos []string
	for range n {
		nos = append(nos, r.place(t))
	}
	for _, s := range r.sockets {
		for seq := uint64(1); seq <= uint64(n); seq++ {
			if o := expectOrder(t, ctx, s, wire.EventOrder, seq); o.DeliveredAt != nil || o.SeenAt != nil {
				t.Fatalf("%s: order frame with receipts %+v", s.name, o)
			}
		}
	}
	return nos
}

// expectOrder reads the next frame of s, which must be event with seq, and
// returns its order.
func expectOrder(t *testing.T, ctx context.Context, s *socket, event string, seq uint64) receiptOrder {
	t.Helper()
	f := s.next(t, ctx)
	var d struct {
		Order receiptOrder `json:"order"`
	}
	if f.Event != event || f.Seq != seq || json.Unmarshal(f.Data, &d) != nil {
		t.Fatalf("%s: got %s, want %s seq %d", s.name, f.raw, event, seq)
	}
	return d.Order
}

// expectSeen reads one order.seen of orderNo with seenAt (any, when empty)
// on every socket.
func (r *receiptsRig) expectSeen(t *testing.T, ctx context.Context, seq uint64, orderNo, seenAt string) {
	t.Helper()
	for _, s := range r.sockets {
		if o := expectOrder(t, ctx, s, wire.EventOrderSeen, seq); o.SeenAt == nil || (seenAt != "" && *o.SeenAt != seenAt) || o.OrderNo != orderNo {
			t.Fatalf("%s: order.seen carries %+v, want %s seenAt %s", s.name, o, orderNo, seenAt)
		}
	}
}

// expectProcessedSeen reads order.processed with seq and a seenAt on every
// socket, and then nothing more.
func (r *receiptsRig) expectProcessedSeen(t *testing.T, ctx context.Context, seq uint64) {
	t.Helper()
	for _, s := range r.sockets {
		if o := expectOrder(t, ctx, s, wire.EventOrderProcessed, seq); o.SeenAt == nil {
			t.Fatalf("%s: order.processed without seenAt", s.name)
		}
		s.quiet(t, ctx)
	}
}

// get reads an order as its merchant.
func (r *receiptsRig) get(t *testing.T, no string) receiptOrder {
	t.Helper()
	code, body := call(t, http.MethodGet, r.api+"/orders/"+no, r.merchant, "")
	var o receiptOrder
	if code != http.StatusOK || json.Unmarshal(body, &o) != nil {
		t.Fatalf("GET %s: %d %s", no, code, body)
	}
	return o
}

// checkSummary compares the summary's orderSum, undelivered, unseen and
// seq with want, polling for up to within (0: one look).
func (r *receiptsRig) checkSummary(t *testing.T, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, body := call(t, http.MethodGet, r.api+"/merchants/"+r.m+"/summary", r.merchant, "")
		var sum struct {
			OrderSum    int64  `json:"orderSum"`
			Undelivered int64  `json:"undelivered"`
			Unseen      int64  `json:"unseen"`
			Seq         uint64 `json:"seq"`
		}
		if code == http.StatusOK && json.Unmarshal(body, &sum) == nil {
			got, _ := json.Marshal(sum)
			if jsonEqual(got, []byte(want)) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("summary: %d %s, want %s", code, body, want)
		}
		time.Sleep(50 * time.Millisecond) // poll interval, bounded by the deadline
	}
}
