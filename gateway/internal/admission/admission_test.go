package admission_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"orderpush/gateway/internal/admission"
	"orderpush/pkg/config"
	"orderpush/pkg/presence"
	"orderpush/pkg/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type counters struct{ connects, failOpen *prometheus.CounterVec }

func newCounters() counters {
	return counters{
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gateway_connects_total"}, []string{"result"}),
		failOpen: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gateway_limit_fail_open_total"}, []string{"limit"}),
	}
}

func newAdmission(cfg admission.Config, r admission.Reserver) (*admission.Admission, counters) {
	c := newCounters()
	return admission.New(cfg, r, c.connects, c.failOpen, slog.New(slog.NewTextHandler(io.Discard, nil))), c
}

// checkRefusal writes the refusal and checks status, code and Retry-After.
func checkRefusal(t *testing.T, r *admission.Refusal, status int, code string) {
	t.Helper()
	if r == nil {
		t.Fatalf("admitted, want %d %s", status, code)
	}
	w := httptest.NewRecorder()
	r.Write(w)
	var body struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	if w.Code != status || body.Error.Code != code || body.Error.Message == "" {
		t.Fatalf("answer %d %+v, want %d %s", w.Code, body.Error, status, code)
	}
	if ra := w.Header().Get("Retry-After"); ra == "" || ra == "0" {
		t.Fatalf("Retry-After %q", ra)
	}
}

func TestConnectRate(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	a, c := newAdmission(admission.Config{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		ConnectRate:    config.Rate{N: 2, Per: time.Second},
		Now:            func() time.Time { return now },
	}, nil)
	from := func(peer, xff string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/ws", nil)
		r.RemoteAddr = peer
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		return r
	}
	for i := range 4 {
		slot, ref := a.Connect(from("127.0.0.1:9", "198.51.100.1"))
		if ref != nil {
			t.Fatalf("attempt %d refused: %v", i, ref)
		}
		slot.Release()
	}
	ref := func() *admission.Refusal { _, r := a.Connect(from("127.0.0.1:9", "198.51.100.1")); return r }()
	checkRefusal(t, ref, http.StatusTooManyRequests, "rate_limited")
	if ref.RetryAfterSeconds() != 1 {
		t.Errorf("Retry-After %d, want 1 (a token every 500 ms)", ref.RetryAfterSeconds())
	}
	// The proxy's other clients, and the proxy itself, are still admitted.
	if _, r := a.Connect(from("127.0.0.1:9", "198.51.100.2")); r != nil {
		t.Fatalf("another client behind the proxy refused: %v", r)
	}
	// A forged header from an untrusted peer does not move the count.
	for range 5 { // the fifth is refused: charged to 203.0.113.5
		a.Connect(from("203.0.113.5:9", "198.51.100.3"))
	}
	if _, r := a.Connect(from("127.0.0.1:9", "198.51.100.3")); r != nil {
		t.Fatalf("198.51.100.3 charged for a forged header: %v", r)
	}
	if got := testutil.ToFloat64(c.connects.WithLabelValues("rate_limited")); got != 2 {
		t.Errorf("rate_limited = %v, want 2", got)
	}
	now = now.Add(time.Second)
	if _, r := a.Connect(from("127.0.0.1:9", "198.51.100.1")); r != nil {
		t.Fatalf("refused after the refill: %v", r)
	}
}

func TestMaxConns(t *testing.T) {
	t.Parallel()
	a, c := newAdmission(admission.Config{MaxConns: 3}, nil)
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	var slots []*admission.Slot
	for range 3 {
		s, ref := a.Connect(r)
		if ref != nil {
			t.Fatal(ref)
		}
		slots = append(slots, s)
	}
	_, ref := a.Connect(r)
	checkRefusal(t, ref, http.StatusServiceUnavailable, "unavailable")
	slots[0].Release()
	slots[0].Release() // idempotent: must not free a second place
	if a.Open() != 2 {
		t.Fatalf("open = %d, want 2", a.Open())
	}
	if _, ref := a.Connect(r); ref != nil {
		t.Fatalf("a released place was not given: %v", ref)
	}
	if _, ref := a.Connect(r); ref == nil {
		t.Fatal("over MAX_CONNS after a double release")
	}
	if got := testutil.ToFloat64(c.connects.WithLabelValues("max_conns")); got != 2 {
		t.Errorf("max_conns = %v, want 2", got)
	}
	var nilSlot *admission.Slot
	nilSlot.Release()
}

func TestMerchantCap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o, err := redis.ParseURL(redistest.SharedURL(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(o)
	defer rdb.Close()
	reg := presence.New(rdb, time.Minute)
	node := redistest.Unique("node")
	if err := reg.Beat(ctx, node); err != nil {
		t.Fatal(err)
	}
	a, c := newAdmission(admission.Config{MaxConnsPerMerchant: 2}, onNode{reg, node})
	m := redistest.Unique("m")
	for range 2 {
		if ref := a.Merchant(ctx, redistest.Unique("c"), m); ref != nil {
			t.Fatal(ref)
		}
	}
	checkRefusal(t, a.Merchant(ctx, redistest.Unique("c"), m), http.StatusTooManyRequests, "too_many_connections")
	if ref := a.Merchant(ctx, redistest.Unique("c"), redistest.Unique("m")); ref != nil {
		t.Fatalf("another merchant refused: %v", ref)
	}
	if got := testutil.ToFloat64(c.connects.WithLabelValues("too_many_connections")); got != 1 {
		t.Errorf("too_many_connections = %v, want 1", got)
	}
}

// onNode reserves on one replica, as the gateway's presence does.
type onNode struct {
	reg  *presence.Registry
	node string
}

func (r onNode) Reserve(ctx context.Context, connID, merchantID string, limit int) (bool, int, error) {
	return r.reg.Reserve(ctx, connID, merchantID, r.node, limit)
}

type brokenReserver struct{}

func (brokenReserver) Reserve(context.Context, string, string, int) (bool, int, error) {
	return false, 0, errors.New("dial tcp: connection refused")
}

func TestMerchantCapFailsOpen(t *testing.T) {
	t.Parallel()
	a, c := newAdmission(admission.Config{MaxConnsPerMerchant: 1}, brokenReserver{})
	for range 3 {
		if ref := a.Merchant(context.Background(), "c1", "m1"); ref != nil {
			t.Fatalf("refused while Redis is down: %v", ref)
		}
	}
	if got := testutil.ToFloat64(c.failOpen.WithLabelValues("max_conns_per_merchant")); got != 3 {
		t.Errorf("fail open = %v, want 3", got)
	}
}

func TestOff(t *testing.T) {
	t.Parallel()
	a, _ := newAdmission(admission.Config{}, brokenReserver{})
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	for range 1000 {
		if _, ref := a.Connect(r); ref != nil {
			t.Fatal(ref)
		}
	}
	if ref := a.Merchant(context.Background(), "c", "m"); ref != nil {
		t.Fatal(ref)
	}
}
