package receipts_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/orderapi"
	"orderpush/gateway/internal/receipts"
	"orderpush/pkg/token"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

var secret = []byte("receipts-test-secret-0123456789abcdef")

// request is one request the order API received.
type request struct {
	Path string // /merchants/{id}/ack or /orders/{orderNo}/seen
	Seq  uint64 // of an ack
	Sub  string // the token's subject
	Role string
}

// fakeAPI is an HTTP order API that records requests; answer, when set,
// decides the status of each (it may block).
type fakeAPI struct {
	t      *testing.T
	mu     sync.Mutex
	reqs   []request
	answer func(r request, n int) int // n: requests so far, this one included
}

func (a *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v, _ := token.NewVerifier(token.Config{Secret: secret})
	raw, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	c, err := v.Verify(raw)
	if err != nil {
		a.t.Errorf("%s: bad token: %v", r.URL.Path, err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	req := request{Path: r.URL.Path, Sub: c.Subject, Role: c.Role}
	if strings.HasSuffix(r.URL.Path, "/ack") {
		var body struct{ Seq uint64 }
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			a.t.Errorf("ack body %q: %v", b, err)
		}
		req.Seq = body.Seq
	}
	a.mu.Lock()
	a.reqs = append(a.reqs, req)
	n := len(a.reqs)
	a.mu.Unlock()
	status := http.StatusNoContent
	if a.answer != nil {
		status = a.answer(req, n)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if status >= 400 {
		_, _ = w.Write([]byte(`{"error":{"code":"invalid_field","message":"no"}}`))
	}
}

func (a *fakeAPI) requests() []request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.reqs)
}

type rig struct {
	api *fakeAPI
	fw  *receipts.Forwarder
	m   *metrics.Metrics
}

// newRig starts a fake order API and a Forwarder calling it through the
// gateway's real client. Run is not started.
func newRig(t *testing.T, cfg receipts.Config, answer func(request, int) int) *rig {
	t.Helper()
	a := &fakeAPI{t: t, answer: answer}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	c, err := orderapi.New(orderapi.Config{BaseURL: srv.URL, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	m := metrics.New(prometheus.NewRegistry())
	return &rig{api: a, fw: receipts.New(cfg, c, slog.New(slog.DiscardHandler), m), m: m}
}

func (r *rig) count(kind, result string) float64 {
	return testutil.ToFloat64(r.m.ReceiptsForwarded.WithLabelValues(kind, result))
}

func merchantToken(t *testing.T, mid string) (string, time.Time) {
	t.Helper()
	tok, err := token.Mint(secret, token.RoleMerchant, mid, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok, time.Now().Add(time.Hour)
}

// Many acks of one merchant between two flushes are one request with the
// highest; Close sends what is pending.
func TestAcksCoalesceToTheHighest(t *testing.T) {
	r := newRig(t, receipts.Config{}, nil)
	for _, seq := range []uint64{3, 9, 1, 7, 9, 2} {
		r.fw.Ack("m1", seq)
	}
	for seq := range uint64(40) {
		r.fw.Ack("m2", seq+1)
	}
	r.fw.Close()
	got := r.api.requests()
	slices.SortFunc(got, func(a, b request) int { return strings.Compare(a.Path, b.Path) })
	want := []request{
		{Path: "/merchants/m1/ack", Seq: 9, Sub: "gateway", Role: token.RoleService},
		{Path: "/merchants/m2/ack", Seq: 40, Sub: "gateway", Role: token.RoleService},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("requests %+v, want %+v", got, want)
	}
	if n := r.count(metrics.ReceiptAck, "ok"); n != 2 {
		t.Fatalf("ok = %v, want 2", n)
	}
	// Closed: later receipts are dropped, not sent.
	r.fw.Ack("m1", 10)
	r.fw.Close()
	if n := len(r.api.requests()); n != 2 || r.count(metrics.ReceiptAck, "dropped") != 1 {
		t.Fatalf("after Close: %d requests, dropped %v", n, r.count(metrics.ReceiptAck, "dropped"))
	}
}

// A seen repeated between flushes is one request, made with the
// merchant's token (never the service token).
func TestSeenIsDeduplicatedAndUsesTheMerchantsToken(t *testing.T) {
	r := newRig(t, receipts.Config{}, nil)
	tok, exp := merchantToken(t, "m1")
	for range 5 {
		r.fw.Seen("m1", "u100000000000000000001", tok, exp)
	}
	r.fw.Seen("m1", "u100000000000000000002", tok, exp)
	r.fw.Close()
	got := r.api.requests()
	slices.SortFunc(got, func(a, b request) int { return strings.Compare(a.Path, b.Path) })
	want := []request{
		{Path: "/orders/u100000000000000000001/seen", Sub: "m1", Role: token.RoleMerchant},
		{Path: "/orders/u100000000000000000002/seen", Sub: "m1", Role: token.RoleMerchant},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("requests %+v, want %+v", got, want)
	}
	if n := r.count(metrics.ReceiptSeen, "ok"); n != 2 {
		t.Fatalf("ok = %v, want 2", n)
	}
}

// Run flushes on its own every Interval, well within the contract's 2 s.
func TestRunFlushesOnTheInterval(t *testing.T) {
	r := newRig(t, receipts.Config{Interval: 20 * time.Millisecond}, nil)
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan struct{})
	go func() {
		r.fw.Run(ctx)
		close(ran)
	}()
	tok, exp := merchantToken(t, "m1")
	start := time.Now()
	r.fw.Ack("m1", 5)
	r.fw.Seen("m1", "u100000000000000000001", tok, exp)
	for len(r.api.requests()) < 2 {
		if time.Since(start) > 2*time.Second {
			t.Fatalf("not forwarded within 2 s: %+v", r.api.requests())
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.fw.Ack("m1", 6)
	for len(r.api.requests()) < 3 {
		if time.Since(start) > 4*time.Second {
			t.Fatalf("second ack not forwarded: %+v", r.api.requests())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The end of Run's context ends it and sends what is pending.
	r.fw.Ack("m1", 7)
	cancel()
	<-ran
	if got := r.api.requests(); got[len(got)-1].Seq != 7 {
		t.Fatalf("last request %+v, want the ack of 7", got[len(got)-1])
	}
	r.fw.Close()
}

// At most MaxMerchants merchants and MaxSeen orders wait; the rest is
// dropped and counted. A merchant already waiting still takes acks.
func TestBounds(t *testing.T) {
	r := newRig(t, receipts.Config{MaxMerchants: 2, MaxSeen: 3}, nil)
	tok, exp := merchantToken(t, "m1")
	r.fw.Ack("m1", 1)
	r.fw.Ack("m2", 1)
	r.fw.Ack("m3", 1) // a third merchant: dropped
	r.fw.Ack("m1", 2)
	for _, no := range []string{"u100000000000000000001", "u100000000000000000002", "u100000000000000000003", "u100000000000000000004"} {
		r.fw.Seen("m1", no, tok, exp)
	}
	r.fw.Seen("m1", "u100000000000000000001", tok, exp) // pending already: not a drop
	r.fw.Seen("m3", "u100000000000000000005", tok, exp) // no room for m3
	if a, s := r.count(metrics.ReceiptAck, "dropped"), r.count(metrics.ReceiptSeen, "dropped"); a != 1 || s != 2 {
		t.Fatalf("dropped ack %v seen %v, want 1 and 2", a, s)
	}
	r.fw.Close()
	var acks, seen int
	for _, q := range r.api.requests() {
		switch {
		case q.Path == "/merchants/m1/ack" && q.Seq == 2, q.Path == "/merchants/m2/ack" && q.Seq == 1:
			acks++
		case strings.HasSuffix(q.Path, "/seen"):
			seen++
		default:
			t.Errorf("unexpected request %+v", q)
		}
	}
	if acks != 2 || seen != 3 {
		t.Fatalf("%d acks, %d seen forwarded; want 2 and 3", acks, seen)
	}
}

// Without an order API every receipt is dropped and counted.
func TestNoOrderAPIDrops(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	fw := receipts.New(receipts.Config{}, nil, slog.New(slog.DiscardHandler), m)
	fw.Ack("m1", 1)
	fw.Seen("m1", "u100000000000000000001", "t", time.Time{})
	fw.Close()
	for _, k := range []string{metrics.ReceiptAck, metrics.ReceiptSeen} {
		if n := testutil.ToFloat64(m.ReceiptsForwarded.WithLabelValues(k, "dropped")); n != 1 {
			t.Fatalf("%s dropped = %v", k, n)
		}
	}
}

// Transient failures (5xx) are retried within the budget; a refusal (4xx)
// is not; one that keeps failing is an error once the budget is spent.
func TestRetries(t *testing.T) {
	t.Run("recovers", func(t *testing.T) {
		r := newRig(t, receipts.Config{}, func(_ request, n int) int {
			if n <= 2 {
				return http.StatusServiceUnavailable
			}
			return http.StatusNoContent
		})
		r.fw.Ack("m1", 4)
		r.fw.Close()
		if n := len(r.api.requests()); n != 3 || r.count(metrics.ReceiptAck, "ok") != 1 {
			t.Fatalf("%d requests, ok %v; want 3 and 1", n, r.count(metrics.ReceiptAck, "ok"))
		}
	})
	t.Run("refused", func(t *testing.T) {
		r := newRig(t, receipts.Config{}, func(request, int) int { return http.StatusBadRequest })
		r.fw.Ack("m1", 4)
		r.fw.Close()
		if n := len(r.api.requests()); n != 1 || r.count(metrics.ReceiptAck, "rejected") != 1 {
			t.Fatalf("%d requests, rejected %v; want 1 and 1", n, r.count(metrics.ReceiptAck, "rejected"))
		}
	})
	t.Run("gives up", func(t *testing.T) {
		const budget = 300 * time.Millisecond
		r := newRig(t, receipts.Config{Budget: budget}, func(request, int) int { return http.StatusInternalServerError })
		r.fw.Ack("m1", 4)
		start := time.Now()
		r.fw.Close()
		took := time.Since(start)
		if n := len(r.api.requests()); n < 2 || r.count(metrics.ReceiptAck, "error") != 1 {
			t.Fatalf("%d requests, error %v; want retries and 1", n, r.count(metrics.ReceiptAck, "error"))
		}
		if took > budget+2*time.Second {
			t.Fatalf("Close took %v with a budget of %v", took, budget)
		}
	})
}

// No more than Concurrency requests are in flight at once.
func TestConcurrencyIsBounded(t *testing.T) {
	const limit = 3
	var (
		mu       sync.Mutex
		inFlight int
		most     int
	)
	release := make(chan struct{})
	// A budget that outlasts a slow machine: the subject is the bound.
	r := newRig(t, receipts.Config{Concurrency: limit, Budget: time.Minute}, func(request, int) int {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		<-release
		mu.Lock()
		inFlight--
		mu.Unlock()
		return http.StatusOK
	})
	tok, exp := merchantToken(t, "m1")
	for i := range 20 {
		r.fw.Seen("m1", fmt.Sprintf("u1%017d", i), tok, exp)
	}
	closed := make(chan struct{})
	go func() {
		r.fw.Close()
		close(closed)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := inFlight
		mu.Unlock()
		if n == limit {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests in flight, want %d", n, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	<-closed
	if most != limit || len(r.api.requests()) != 20 {
		t.Fatalf("at most %d in flight (want %d), %d requests (want 20)", most, limit, len(r.api.requests()))
	}
}

// A receipt the order API did not take within one flush's budget is tried
// again in later flushes, until MaxAge.
func TestRetriesInLaterFlushes(t *testing.T) {
	waitFor := func(t *testing.T, what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond) // poll interval, bounded by the deadline
		}
	}
	run := func(t *testing.T, r *rig) {
		ctx, cancel := context.WithCancel(t.Context())
		ran := make(chan struct{})
		go func() {
			r.fw.Run(ctx)
			close(ran)
		}()
		t.Cleanup(func() {
			cancel()
			<-ran
		})
	}
	t.Run("taken once the api recovers", func(t *testing.T) {
		var healthy atomic.Bool
		r := newRig(t, receipts.Config{Interval: 20 * time.Millisecond, Budget: 60 * time.Millisecond}, func(request, int) int {
			if healthy.Load() {
				return http.StatusNoContent
			}
			return http.StatusServiceUnavailable
		})
		run(t, r)
		tok, exp := merchantToken(t, "m1")
		r.fw.Ack("m1", 5)
		r.fw.Seen("m1", "u100000000000000000001", tok, exp)
		// Several flushes' worth of failed attempts, none given up.
		waitFor(t, "attempts over several flushes", func() bool { return len(r.api.requests()) >= 8 })
		healthy.Store(true)
		waitFor(t, "both taken", func() bool {
			return r.count(metrics.ReceiptAck, "ok") == 1 && r.count(metrics.ReceiptSeen, "ok") == 1
		})
		if a, s := r.count(metrics.ReceiptAck, "error"), r.count(metrics.ReceiptSeen, "error"); a != 0 || s != 0 {
			t.Fatalf("errors counted: ack %v seen %v", a, s)
		}
		for _, q := range r.api.requests() {
			if strings.HasSuffix(q.Path, "/ack") && q.Seq != 5 || strings.HasSuffix(q.Path, "/seen") && q.Sub != "m1" {
				t.Fatalf("retried as %+v", q)
			}
		}
	})
	t.Run("given up after MaxAge", func(t *testing.T) {
		r := newRig(t, receipts.Config{Interval: 20 * time.Millisecond, Budget: 60 * time.Millisecond, MaxAge: 300 * time.Millisecond},
			func(request, int) int { return http.StatusBadGateway })
		run(t, r)
		r.fw.Ack("m1", 5)
		waitFor(t, "the ack given up", func() bool { return r.count(metrics.ReceiptAck, "error") == 1 })
		n := len(r.api.requests())
		if n < 3 {
			t.Fatalf("given up after %d attempts, want retries over several flushes", n)
		}
	})
}
