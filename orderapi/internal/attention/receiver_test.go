package attention_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"orderpush/orderapi/internal/attention"
)

// secret is the webhook secret of every test server.
const secret = "attention-test-secret-0123456789abcdefXYZ"

// delivery is one request the receiver got.
type delivery struct {
	At       time.Time
	EventID  string // X-Orderpush-Event-Id
	SigOK    bool   // X-Orderpush-Signature verified with secret
	Event    attention.Event
	Body     []byte
	Status   int // what the receiver answered
	Unknowns []string
}

// receiver is a real HTTP server on loopback recording every webhook
// request. answer decides each status (default 200).
type receiver struct {
	srv *httptest.Server

	mu     sync.Mutex
	got    []delivery
	answer func(n int, ev attention.Event) int // n counts this event id's requests, from 1
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) URL() string { return r.srv.URL + "/hooks/orderpush?src=test" }

func (r *receiver) setAnswer(f func(n int, ev attention.Event) int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answer = f
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	d := delivery{At: time.Now(), EventID: req.Header.Get(attention.HeaderEventID), Body: body,
		SigOK: attention.Verify([]byte(secret), body, req.Header.Get(attention.HeaderSignature))}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d.Event); err != nil || req.Method != http.MethodPost ||
		req.Header.Get("Content-Type") != "application/json" || req.URL.Query().Get("src") != "test" {
		d.Unknowns = append(d.Unknowns, "bad request: "+req.Method+" "+req.URL.String()+" "+string(body))
	}
	r.mu.Lock()
	n := 1
	for _, g := range r.got {
		if g.EventID == d.EventID {
			n++
		}
	}
	d.Status = http.StatusOK
	if r.answer != nil {
		d.Status = r.answer(n, d.Event)
	}
	r.got = append(r.got, d)
	r.mu.Unlock()
	w.WriteHeader(d.Status)
}

// deliveries returns a copy of what arrived so far.
func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// of returns the deliveries of one order and type.
func (r *receiver) of(orderNo, typ string) []delivery {
	var out []delivery
	for _, d := range r.deliveries() {
		if d.Event.OrderNo == orderNo && d.Event.Type == typ {
			out = append(out, d)
		}
	}
	return out
}
