package orderapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// answerServer is an order API stand-in that answers every request with
// the status and body it was last given.
type answerServer struct {
	mu     sync.Mutex
	status int
	body   []byte
}

func (a *answerServer) set(status int, body []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status, a.body = status, body
}

func (a *answerServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	status, body := a.status, a.body
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// FuzzAnswers feeds the order API client arbitrary answers (status and
// body) for the summary, the event log and process: it never panics; a
// summary it accepts had both fields; events it accepts are in strictly
// increasing seq order above "after"; a non-2xx answer is always an *Error
// with a code.
func FuzzAnswers(f *testing.F) {
	f.Add(200, []byte(`{"orderSum":3,"seq":7}`))
	f.Add(200, []byte(`{"orderSum":3}`))
	f.Add(200, []byte(`{"events":[{"event":"order","seq":6,"data":{}},{"event":"order","seq":7,"data":{}}]}`))
	f.Add(200, []byte(`{"events":[{"event":"order","seq":7},{"event":"order","seq":6}]}`))
	f.Add(404, []byte(`{"error":{"code":"not_found","message":"no such order"}}`))
	f.Add(500, []byte(`<html>`))
	f.Add(204, []byte(``))
	f.Add(200, []byte(`{"events":null,"orderSum":-1,"seq":18446744073709551615}`))
	srv := &answerServer{}
	hs := httptest.NewServer(srv)
	f.Cleanup(hs.Close)
	c, err := New(Config{BaseURL: hs.URL, Secret: secret})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(c.Close)
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 200 || status > 599 {
			return // not an HTTP status net/http will write
		}
		srv.set(status, body)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		check := func(err error) {
			var apiErr *Error
			if status/100 != 2 && (!errors.As(err, &apiErr) || apiErr.Code == "" || apiErr.Status != status) {
				t.Fatalf("status %d: error %v, want an *Error with a code", status, err)
			}
		}
		if _, err := c.Summary(ctx, "m1"); err != nil {
			check(err)
		}
		const after = 5
		evs, err := c.Events(ctx, "m1", after, 100)
		if err != nil {
			check(err)
		} else {
			last := uint64(after)
			for _, e := range evs {
				if e.Seq <= last {
					t.Fatalf("events out of order: %d after %d", e.Seq, last)
				}
				last = e.Seq
			}
		}
		if err := c.Process(ctx, "u100117956594781230001", "tok"); err != nil {
			check(err)
		}
	})
}
