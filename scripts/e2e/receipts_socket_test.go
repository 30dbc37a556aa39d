package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"orderpush/pkg/pgtest"
	"orderpush/pkg/poll"
	"orderpush/pkg/wire"
	"orderpush/scripts/launch"
)

// receiptWithin is how long a receipt sent on a socket may take to show in
// the API: the contract's 2 s, and a margin for a busy test machine.
const receiptWithin = 2*time.Second + 1500*time.Millisecond

// Receipts end to end over sockets: one merchant with a socket on each of
// two gateways. deliveredAt stays null until a socket acks a seq at or
// above the order's and then shows within the contract's 2 s, whichever
// gateway took the ack; an ack above what the socket was sent is refused;
// the first seen emits exactly one order.seen on every socket (both
// gateways), a second one (on the other gateway) none; processing an
// unseen order over the socket sets seenAt; the summary counts what is
// left undelivered and unseen.
func TestReceiptsOverSockets(t *testing.T) { receiptsOverSockets(t, "") }

// TestReceiptsOverSocketsPostgres is the same on PostgreSQL.
func TestReceiptsOverSocketsPostgres(t *testing.T) { receiptsOverSockets(t, pgtest.NewDatabase(t)) }

func receiptsOverSockets(t *testing.T, databaseURL string) {
	r := startReceipts(t, databaseURL, "e2e-rs")
	s0, s1 := r.sockets[0], r.sockets[1]
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	nos := r.placeAndReceive(t, ctx, 2)
	if r.get(t, nos[0]).DeliveredAt != nil || r.get(t, nos[1]).DeliveredAt != nil {
		t.Fatal("delivered before any ack")
	}

	s0.send(t, ctx, `{"event":"ack","seq":3}`)
	if f := s0.next(t, ctx); f.Event != wire.EventError || !strings.Contains(string(f.Data), `"code":"invalid_field"`) {
		t.Fatalf("ack above what the socket was sent: got %s, want an invalid_field error", f.raw)
	}

	s0.send(t, ctx, `{"event":"ack","seq":1}`)
	r.waitDelivered(t, nos[0])
	if o := r.get(t, nos[1]); o.DeliveredAt != nil {
		t.Fatalf("order 2 delivered by an ack of seq 1: %+v", o)
	}
	s1.send(t, ctx, `{"event":"ack","seq":2}`)
	r.waitDelivered(t, nos[1])

	s0.send(t, ctx, `{"event":"seen","data":{"orderNo":"`+nos[1]+`"}}`)
	r.expectSeen(t, ctx, 3, nos[1], "")
	if o := r.get(t, nos[1]); o.SeenAt == nil {
		t.Fatalf("order.seen sent, the order has no seenAt: %+v", o)
	}
	// A second seen through the other gateway reaches the order API (the
	// gateway counts its answer) and emits nothing: no frame before the
	// pong, and the next event is the process below with the next seq.
	s1.send(t, ctx, `{"event":"seen","data":{"orderNo":"`+nos[1]+`"}}`)
	waitMetric(t, r.sys.Gateways[1], `gateway_receipts_forwarded_total{kind="seen",result="ok"} 1`)
	for _, s := range r.sockets {
		s.quiet(t, ctx)
	}
	s1.send(t, ctx, `{"event":"process","data":{"orderNo":"`+nos[0]+`"}}`)
	r.expectProcessedSeen(t, ctx, 4)

	no3 := r.place(t)
	for _, s := range r.sockets {
		expectOrder(t, ctx, s, wire.EventOrder, 5)
	}
	r.checkSummary(t, `{"orderSum":2,"undelivered":1,"unseen":1,"seq":5}`, 0)
	s1.send(t, ctx, `{"event":"ack","seq":5}`)
	s1.send(t, ctx, `{"event":"seen","data":{"orderNo":"`+no3+`"}}`)
	r.expectSeen(t, ctx, 6, no3, "")
	r.checkSummary(t, `{"orderSum":2,"undelivered":0,"unseen":0,"seq":6}`, receiptWithin)
}

// waitDelivered polls the order until it has deliveredAt, for up to
// receiptWithin.
func (r *receiptsRig) waitDelivered(t *testing.T, no string) {
	t.Helper()
	poll.TrueWithin(t, receiptWithin, "deliveredAt of "+no+" after the ack", func() bool { return r.get(t, no).DeliveredAt != nil })
}

// waitMetric polls gw's /metrics until it has line, for up to
// receiptWithin.
func waitMetric(t *testing.T, gw *launch.Service, line string) {
	t.Helper()
	poll.TrueWithin(t, receiptWithin, fmt.Sprintf("%q in %s /metrics", line, gw.Name), func() bool {
		return strings.Contains(get(t, gw.URL+"/metrics"), line+"\n")
	})
}
