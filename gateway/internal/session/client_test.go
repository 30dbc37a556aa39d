package session

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/session/sendq"
)

// receiptLog is a Receipts that records what it is handed.
type receiptLog struct {
	mu  sync.Mutex
	got []string
}

func (r *receiptLog) Ack(merchant string, seq uint64) {
	r.add(merchant + " ack " + strconv.FormatUint(seq, 10))
}

func (r *receiptLog) Seen(merchant, orderNo string) {
	r.add(merchant + " seen " + orderNo)
}

func (r *receiptLog) add(s string) {
	r.mu.Lock()
	r.got = append(r.got, s)
	r.mu.Unlock()
}

// TestReceipts: an ack up to the highest seq the socket was given (hello's
// or a frame's) and a seen go to the forwarder with the session's
// merchant; an ack above it is refused with invalid_field and never
// forwarded.
func TestReceipts(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	rl := new(receiptLog)
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s := New(Identity{ID: "c1", Merchant: "m1", Bearer: "tok", Expiry: exp, Transport: metrics.TransportWS}, Config{},
		Deps{Receipts: rl, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: m})
	w := &writer{wrote: make(chan struct{}, 1)}
	s.TrySend(sendq.Entry{Data: []byte(`{"event":"hello","data":{"seq":2}}`), Seq: 2})
	s.Start(context.Background(), w, nil)

	s.Handle([]byte(`{"event":"ack","seq":2}`))
	s.Handle([]byte(`{"event":"ack","seq":3}`)) // above hello's 2: refused
	s.TrySend(sendq.Entry{Data: []byte(`{"event":"order","seq":3}`), Seq: 3})
	s.TrySend(sendq.Entry{Data: []byte(`{"event":"notice"}`)}) // no seq: changes nothing
	s.Handle([]byte(`{"event":"ack","seq":3}`))
	s.Handle([]byte(`{"event":"seen","data":{"orderNo":"u100000000000000000001"}}`))
	s.End()

	want := []string{"m1 ack 2", "m1 ack 3", "m1 seen u100000000000000000001"}
	if !slices.Equal(rl.got, want) {
		t.Fatalf("forwarded %q, want %q", rl.got, want)
	}
	var refusals []string
	for _, f := range w.frames {
		if strings.Contains(f, `"event":"error"`) {
			refusals = append(refusals, f)
		}
	}
	if len(refusals) != 1 || !strings.Contains(refusals[0], `"code":"invalid_field"`) || !strings.Contains(refusals[0], "ack seq 3 is above 2") {
		t.Fatalf("error frames %q, want one invalid_field for the ack of 3", refusals)
	}
	if n := testutil.ToFloat64(m.ReceiptsForwarded.WithLabelValues(metrics.ReceiptAck, "rejected")); n != 1 {
		t.Fatalf("rejected acks counted %v, want 1", n)
	}
}
