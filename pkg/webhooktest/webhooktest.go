// Package webhooktest is a real attention webhook receiver for tests, in
// the manner of net/http/httptest: an HTTP server on loopback that checks
// every request against the contract (PROTOCOL.md, "Receipts and
// attention") and records it.
package webhooktest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"orderpush/pkg/webhook"
)

// Path and Query are where URL points: a receiver's own path and query
// must reach it unchanged.
const (
	Path  = "/hooks/orderpush"
	Query = "src=test"
)

// Delivery is one request the receiver got.
type Delivery struct {
	At      time.Time
	EventID string // X-Orderpush-Event-Id
	SigOK   bool   // X-Orderpush-Signature verified with the receiver's secret
	Event   webhook.Event
	Body    []byte
	Status  int // what the receiver answered
	// Problems lists how the request departs from the contract (method,
	// content type, path, query, a body that is not exactly an Event).
	Problems []string
}

// Receiver records every webhook request. Answer decides each status
// (default 200). Server is exposed so a test can swap its handler for a
// hostile one.
type Receiver struct {
	Server *httptest.Server
	secret []byte

	mu     sync.Mutex
	got    []Delivery                        // guarded by mu
	answer func(n int, ev webhook.Event) int // guarded by mu
}

// New starts a receiver that verifies signatures with secret; it stops at
// the test's cleanup.
func New(t testing.TB, secret []byte) *Receiver {
	t.Helper()
	r := &Receiver{secret: secret}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Server.Close)
	return r
}

// URL is the receiver's ATTENTION_WEBHOOK_URL.
func (r *Receiver) URL() string { return r.Server.URL + Path + "?" + Query }

// SetAnswer makes f decide the status of every later request; n counts
// the requests with that event id so far, this one included (from 1).
func (r *Receiver) SetAnswer(f func(n int, ev webhook.Event) int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answer = f
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	d := Delivery{At: time.Now(), EventID: req.Header.Get(webhook.HeaderEventID), Body: body,
		SigOK: webhook.Verify(r.secret, body, req.Header.Get(webhook.HeaderSignature))}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d.Event); err != nil || dec.More() {
		d.Problems = append(d.Problems, "body is not one event: "+string(body))
	}
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" ||
		req.URL.Path != Path || req.URL.RawQuery != Query {
		d.Problems = append(d.Problems, "request: "+req.Method+" "+req.URL.String()+" "+req.Header.Get("Content-Type"))
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

// Deliveries returns a copy of what arrived so far.
func (r *Receiver) Deliveries() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.got...)
}

// Of returns the deliveries of one order's alert of a type.
func (r *Receiver) Of(orderNo, alertType string) []Delivery {
	var out []Delivery
	for _, d := range r.Deliveries() {
		if d.Event.OrderNo == orderNo && d.Event.Type == alertType {
			out = append(out, d)
		}
	}
	return out
}
