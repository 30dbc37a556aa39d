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
	"orderpush/pkg/poll"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

var secret = []byte("receipts-test-secret-0123456789abcdef")

// request is one batch the order API received.
type request struct {
	Sub, Role string // the token's
	wire.ReceiptBatch
}

// foreign is an order of another merchant: the fake skips its seen.
const foreign = "u100000000000000000009"

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
	req := request{Sub: c.Subject, Role: c.Role}
	b, _ := io.ReadAll(r.Body)
	if r.URL.Path != "/receipts" || json.Unmarshal(b, &req.ReceiptBatch) != nil {
		a.t.Errorf("%s %q: not a batch", r.URL.Path, b)
	}
	if n := len(req.Acks) + len(req.Seen); n == 0 || n > wire.MaxReceiptItems {
		a.t.Errorf("a batch of %d items", n)
	}
	a.mu.Lock()
	a.reqs = append(a.reqs, req)
	n := len(a.reqs)
	a.mu.Unlock()
	status := http.StatusOK
	if a.answer != nil {
		status = a.answer(req, n)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if status >= 400 {
		_, _ = w.Write([]byte(`{"error":{"code":"invalid_field","message":"no"}}`))
		return
	}
	res := wire.ReceiptResult{Acks: wire.ReceiptCounts{Applied: len(req.Acks)}}
	for _, x := range req.Seen {
		if x.OrderNo == foreign {
			res.Seen.Skipped++
		} else {
			res.Seen.Applied++
		}
	}
	_ = json.NewEncoder(w).Encode(res)
}

func (a *fakeAPI) requests() []request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.reqs)
}

// acks and seen are every item of every batch received.
func (a *fakeAPI) acks() (out []wire.AckReceipt) {
	for _, r := range a.requests() {
		out = append(out, r.Acks...)
	}
	return out
}

func (a *fakeAPI) seen() (out []wire.SeenReceipt) {
	for _, r := range a.requests() {
		out = append(out, r.Seen...)
	}
	return out
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

// Many acks of one merchant between two flushes are one item with the
// highest, all merchants' in one batch with the service token; Close sends
// what is pending.
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
	if len(got) != 1 || got[0].Role != token.RoleService || got[0].Sub != "gateway" || len(got[0].Seen) != 0 {
		t.Fatalf("requests %+v, want one batch with the service token", got)
	}
	acks := got[0].Acks
	slices.SortFunc(acks, func(a, b wire.AckReceipt) int { return strings.Compare(a.MerchantID, b.MerchantID) })
	if want := []wire.AckReceipt{{MerchantID: "m1", Seq: 9}, {MerchantID: "m2", Seq: 40}}; !slices.Equal(acks, want) {
		t.Fatalf("acks %+v, want %+v", acks, want)
	}
	if n := r.count(metrics.ReceiptAck, "ok"); n != 2 {
		t.Fatalf("ok = %v, want 2", n)
	}
	// Closed: later receipts are dropped, not sent.
	r.fw.Ack("m1", 10)
	r.fw.Close()
	if n := len(r.api.requests()); n != 1 || r.count(metrics.ReceiptAck, "dropped") != 1 {
		t.Fatalf("after Close: %d requests, dropped %v", n, r.count(metrics.ReceiptAck, "dropped"))
	}
}

// A seen repeated between flushes is one item naming its merchant; what
// the order API skips (another merchant's order) counts as rejected.
func TestSeenIsDeduplicatedAndNamesTheMerchant(t *testing.T) {
	r := newRig(t, receipts.Config{}, nil)
	for range 5 {
		r.fw.Seen("m1", "u100000000000000000001")
	}
	r.fw.Seen("m1", "u100000000000000000002")
	r.fw.Seen("m2", foreign)
	r.fw.Close()
	got := r.api.seen()
	slices.SortFunc(got, func(a, b wire.SeenReceipt) int { return strings.Compare(a.OrderNo, b.OrderNo) })
	want := []wire.SeenReceipt{
		{MerchantID: "m1", OrderNo: "u100000000000000000001"},
		{MerchantID: "m1", OrderNo: "u100000000000000000002"},
		{MerchantID: "m2", OrderNo: foreign},
	}
	if !slices.Equal(got, want) || len(r.api.requests()) != 1 {
		t.Fatalf("seen %+v in %d batches, want %+v in one", got, len(r.api.requests()), want)
	}
	if ok, rej := r.count(metrics.ReceiptSeen, "ok"), r.count(metrics.ReceiptSeen, "rejected"); ok != 2 || rej != 1 {
		t.Fatalf("ok = %v, rejected = %v; want 2 and 1", ok, rej)
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
	r.fw.Ack("m1", 5)
	r.fw.Seen("m1", "u100000000000000000001")
	poll.TrueWithin(t, 2*time.Second, "the ack and the seen forwarded within 2 s", func() bool {
		return len(r.api.acks()) >= 1 && len(r.api.seen()) >= 1
	})
	r.fw.Ack("m1", 6)
	poll.TrueWithin(t, 2*time.Second, "the second ack forwarded within 2 s", func() bool { return len(r.api.acks()) >= 2 })
	// The end of Run's context ends it and sends what is pending.
	r.fw.Ack("m1", 7)
	cancel()
	<-ran
	if got := r.api.acks(); got[len(got)-1].Seq != 7 {
		t.Fatalf("last ack %+v, want 7", got[len(got)-1])
	}
	r.fw.Close()
}

// At most MaxMerchants merchants and MaxSeen orders wait; the rest is
// dropped and counted. A merchant already waiting still takes acks.
func TestBounds(t *testing.T) {
	r := newRig(t, receipts.Config{MaxMerchants: 2, MaxSeen: 3}, nil)
	r.fw.Ack("m1", 1)
	r.fw.Ack("m2", 1)
	r.fw.Ack("m3", 1) // a third merchant: dropped
	r.fw.Ack("m1", 2)
	for _, no := range []string{"u100000000000000000001", "u100000000000000000002", "u100000000000000000003", "u100000000000000000004"} {
		r.fw.Seen("m1", no)
	}
	r.fw.Seen("m1", "u100000000000000000001") // pending already: not a drop
	r.fw.Seen("m3", "u100000000000000000005") // no room for m3
	if a, s := r.count(metrics.ReceiptAck, "dropped"), r.count(metrics.ReceiptSeen, "dropped"); a != 1 || s != 2 {
		t.Fatalf("dropped ack %v seen %v, want 1 and 2", a, s)
	}
	r.fw.Close()
	acks := r.api.acks()
	slices.SortFunc(acks, func(a, b wire.AckReceipt) int { return strings.Compare(a.MerchantID, b.MerchantID) })
	if want := []wire.AckReceipt{{MerchantID: "m1", Seq: 2}, {MerchantID: "m2", Seq: 1}}; !slices.Equal(acks, want) {
		t.Fatalf("acks %+v, want %+v", acks, want)
	}
	if n := len(r.api.seen()); n != 3 {
		t.Fatalf("%d seen forwarded, want 3", n)
	}
}

// Without an order API every receipt is dropped and counted.
func TestNoOrderAPIDrops(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	fw := receipts.New(receipts.Config{}, nil, slog.New(slog.DiscardHandler), m)
	fw.Ack("m1", 1)
	fw.Seen("m1", "u100000000000000000001")
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
			return http.StatusOK
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

// A flush sends batches of at most wire.MaxReceiptItems, no more than
// Concurrency at once.
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
	const items = (limit+1)*wire.MaxReceiptItems + 1 // limit+2 batches
	for i := range items {
		r.fw.Seen("m1", fmt.Sprintf("u1%017d", i))
	}
	closed := make(chan struct{})
	go func() {
		r.fw.Close()
		close(closed)
	}()
	poll.True(t, fmt.Sprintf("%d requests in flight", limit), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return inFlight == limit
	})
	close(release)
	<-closed
	if most != limit || len(r.api.requests()) != limit+2 || len(r.api.seen()) != items {
		t.Fatalf("at most %d in flight (want %d), %d batches (want %d) of %d seen (want %d)",
			most, limit, len(r.api.requests()), limit+2, len(r.api.seen()), items)
	}
}

// A receipt the order API did not take within one flush's budget is tried
// again in later flushes, until MaxAge.
func TestRetriesInLaterFlushes(t *testing.T) {
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
				return http.StatusOK
			}
			return http.StatusServiceUnavailable
		})
		run(t, r)
		r.fw.Ack("m1", 5)
		r.fw.Seen("m1", "u100000000000000000001")
		// Several flushes' worth of failed attempts, none given up.
		poll.True(t, "attempts over several flushes", func() bool { return len(r.api.requests()) >= 4 })
		healthy.Store(true)
		poll.True(t, "both taken", func() bool {
			return r.count(metrics.ReceiptAck, "ok") == 1 && r.count(metrics.ReceiptSeen, "ok") == 1
		})
		if a, s := r.count(metrics.ReceiptAck, "error"), r.count(metrics.ReceiptSeen, "error"); a != 0 || s != 0 {
			t.Fatalf("errors counted: ack %v seen %v", a, s)
		}
		for _, a := range r.api.acks() {
			if a != (wire.AckReceipt{MerchantID: "m1", Seq: 5}) {
				t.Fatalf("ack retried as %+v", a)
			}
		}
		for _, x := range r.api.seen() {
			if x != (wire.SeenReceipt{MerchantID: "m1", OrderNo: "u100000000000000000001"}) {
				t.Fatalf("seen retried as %+v", x)
			}
		}
	})
	t.Run("given up after MaxAge", func(t *testing.T) {
		r := newRig(t, receipts.Config{Interval: 20 * time.Millisecond, Budget: 60 * time.Millisecond, MaxAge: 300 * time.Millisecond},
			func(request, int) int { return http.StatusBadGateway })
		run(t, r)
		r.fw.Ack("m1", 5)
		poll.True(t, "the ack given up", func() bool { return r.count(metrics.ReceiptAck, "error") == 1 })
		n := len(r.api.requests())
		if n < 3 {
			t.Fatalf("given up after %d attempts, want retries over several flushes", n)
		}
	})
}
