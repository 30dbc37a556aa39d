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
// and seen are the gateway's (forwarded to these same endpoints).
func TestReceiptsOverHTTP(t *testing.T) { receiptsOverHTTP(t, "") }

// TestReceiptsOverHTTPPostgres is the same on PostgreSQL.
func TestReceiptsOverHTTPPostgres(t *testing.T) { receiptsOverHTTP(t, pgtest.NewDatabase(t)) }

func receiptsOverHTTP(t *testing.T, databaseURL string) {
	sys := launch.StartSystemT(t, launch.SystemSpec{Bins: bins, RedisURL: redistest.SharedURL(t), DatabaseURL: databaseURL})
	m := redistest.Unique("e2e-r")
	merchant := sys.Token(token.RoleMerchant, m)
	member := sys.Token(token.RoleMember, "u1")
	api := sys.OrderAPI.URL
	var sockets []*socket
	for i, gw := range sys.Gateways[:2] {
		sockets = append(sockets, dial(t, gw, merchant, fmt.Sprintf("%s/%d@%s", m, i, gw.Name)))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	type orderJSON struct {
		OrderNo     string  `json:"orderNo"`
		DeliveredAt *string `json:"deliveredAt"`
		SeenAt      *string `json:"seenAt"`
	}
	expect := func(s *socket, event string, seq uint64) orderJSON {
		t.Helper()
		f := s.next(t, ctx)
		var d struct {
			Order orderJSON `json:"order"`
		}
		if f.Event != event || f.Seq != seq || json.Unmarshal(f.Data, &d) != nil {
			t.Fatalf("%s: got %s, want %s seq %d", s.name, f.raw, event, seq)
		}
		return d.Order
	}
	var nos []string
	for range 2 {
		code, body := call(t, http.MethodPost, api+"/orders", member, `{"merchantId":"`+m+`","date":"2022-06-22","price":1}`)
		var o orderJSON
		if code != http.StatusCreated || json.Unmarshal(body, &o) != nil {
			t.Fatalf("place: %d %s", code, body)
		}
		nos = append(nos, o.OrderNo)
	}
	for _, s := range sockets {
		for seq := uint64(1); seq <= 2; seq++ {
			if o := expect(s, wire.EventOrder, seq); o.DeliveredAt != nil || o.SeenAt != nil {
				t.Fatalf("%s: order frame with receipts %+v", s.name, o)
			}
		}
	}
	get := func(no string) orderJSON {
		t.Helper()
		code, body := call(t, http.MethodGet, api+"/orders/"+no, merchant, "")
		var o orderJSON
		if code != http.StatusOK || json.Unmarshal(body, &o) != nil {
			t.Fatalf("GET %s: %d %s", no, code, body)
		}
		return o
	}

	if code, body := call(t, http.MethodPost, api+"/merchants/"+m+"/ack", merchant, `{"seq":1}`); code != http.StatusNoContent {
		t.Fatalf("ack 1: %d %s", code, body)
	}
	if get(nos[0]).DeliveredAt == nil || get(nos[1]).DeliveredAt != nil {
		t.Fatalf("after ack 1: %+v %+v", get(nos[0]), get(nos[1]))
	}

	var seenAt string
	for i := range 2 {
		code, body := call(t, http.MethodPost, api+"/orders/"+nos[1]+"/seen", merchant, "")
		var o orderJSON
		if code != http.StatusOK || json.Unmarshal(body, &o) != nil || o.SeenAt == nil {
			t.Fatalf("seen %d: %d %s", i, code, body)
		}
		seenAt = *o.SeenAt
	}
	for _, s := range sockets {
		if o := expect(s, wire.EventOrderSeen, 3); o.SeenAt == nil || *o.SeenAt != seenAt || o.OrderNo != nos[1] {
			t.Fatalf("%s: order.seen carries %+v, want seenAt %s", s.name, o, seenAt)
		}
	}
	if code, body := call(t, http.MethodPost, api+"/orders/"+nos[0]+"/process", merchant, ""); code != http.StatusOK {
		t.Fatalf("process: %d %s", code, body)
	}
	// The second seen emitted nothing: the next frame is order.processed
	// (seq 4), which carries the seenAt processing set.
	for _, s := range sockets {
		if o := expect(s, wire.EventOrderProcessed, 4); o.SeenAt == nil {
			t.Fatalf("%s: order.processed without seenAt", s.name)
		}
		s.quiet(t, ctx)
	}
	code, body := call(t, http.MethodGet, api+"/merchants/"+m+"/summary", merchant, "")
	var sum struct {
		OrderSum, Undelivered, Unseen int64
		Seq                           uint64
	}
	if code != http.StatusOK || json.Unmarshal(body, &sum) != nil || sum.OrderSum != 1 || sum.Undelivered != 1 || sum.Unseen != 0 || sum.Seq != 4 {
		t.Fatalf("summary: %d %s", code, body)
	}
}
