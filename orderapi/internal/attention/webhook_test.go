package attention_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"orderpush/orderapi/internal/apitest"
	"orderpush/orderapi/internal/attention"
	"orderpush/orderapi/internal/server"
	"orderpush/pkg/poll"
	"orderpush/pkg/presence"
	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
	"orderpush/pkg/webhook"
	"orderpush/pkg/webhooktest"
	"orderpush/pkg/wire"
)

// secret is the webhook secret of every test server.
const secret = "attention-test-secret-0123456789abcdefXYZ"

// settings are a test server's webhook settings; zero fields take the
// test defaults of start.
type settings struct {
	undelivered, unseen time.Duration
	workers             int
	attemptTimeout      time.Duration
	url                 string
}

// start runs an order API with the webhook pointing at rcv.
func start(t *testing.T, opt apitest.Options, rcv *webhooktest.Receiver, s settings) *apitest.Env {
	t.Helper()
	if s.undelivered == 0 {
		s.undelivered = time.Minute
	}
	if s.unseen == 0 {
		s.unseen = time.Hour
	}
	if s.url == "" {
		s.url = rcv.URL()
	}
	u, err := attention.ParseURL(s.url)
	if err != nil {
		t.Fatal(err)
	}
	opt.Tweak = func(c *server.Config) {
		c.Attention = attention.Config{
			URL: u, Secret: []byte(secret), UndeliveredAfter: s.undelivered, UnseenAfter: s.unseen,
			PollInterval: 50 * time.Millisecond, Workers: s.workers, AttemptTimeout: s.attemptTimeout,
		}
	}
	return apitest.Start(t, opt)
}

type placed struct {
	OrderNo   string `json:"orderNo"`
	CreatedAt string `json:"createdAt"`
}

func placeOrder(t *testing.T, env *apitest.Env, merchant string) placed {
	t.Helper()
	resp := env.Do(t, http.MethodPost, "/orders", apitest.Token(t, token.RoleMember, "u1001"),
		`{"merchantId":"`+merchant+`","date":"2022-06-22","price":36}`)
	if resp.Status != http.StatusCreated {
		t.Fatalf("POST /orders: %d %s", resp.Status, resp.Body)
	}
	var p placed
	resp.Decode(t, &p)
	return p
}

// online puts one socket of merchant into Redis presence, as a gateway
// replica would, so the order API counts it.
func online(t *testing.T, env *apitest.Env, merchant string) {
	t.Helper()
	opt, err := redis.ParseURL(env.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	reg := presence.New(rdb, 5*time.Minute)
	node := redistest.Unique("node")
	if err := reg.Beat(t.Context(), node); err != nil {
		t.Fatal(err)
	}
	if err := reg.Add(t.Context(), redistest.Unique("conn"), merchant, node); err != nil {
		t.Fatal(err)
	}
}

type alertJSON struct {
	Type        string  `json:"type"`
	FiredAt     string  `json:"firedAt"`
	Attempts    int     `json:"attempts"`
	CompletedAt *string `json:"completedAt"`
}

func alertsOf(t *testing.T, env *apitest.Env, merchant, orderNo string) []alertJSON {
	t.Helper()
	resp := env.Do(t, http.MethodGet, "/orders/"+orderNo, apitest.Token(t, token.RoleMerchant, merchant), "")
	if resp.Status != http.StatusOK {
		t.Fatalf("GET /orders/%s: %d %s", orderNo, resp.Status, resp.Body)
	}
	var o struct {
		OrderNo string       `json:"orderNo"`
		Alerts  *[]alertJSON `json:"alerts"`
	}
	resp.Decode(t, &o)
	if o.OrderNo != orderNo || o.Alerts == nil {
		t.Fatalf("GET /orders/%s: no alerts field: %s", orderNo, resp.Body)
	}
	return *o.Alerts
}

// attempts reads orderapi_webhook_attempts_total{type,outcome}.
func attempts(t *testing.T, reg *prometheus.Registry, typ, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "orderapi_webhook_attempts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["type"] == typ && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no orderapi_webhook_attempts_total{type=%q,outcome=%q}", typ, outcome)
	return 0
}

// An order placed while its merchant has no socket online is
// order.undelivered at once (long before UNDELIVERED_AFTER); one whose
// merchant has a socket is not. The request is signed with the secret, its
// body is the contract's, and the alert shows on the order.
func TestUndeliveredAtOnceWithoutSocket(t *testing.T) {
	apitest.Each(t, func(t *testing.T, dialect string) {
		rcv := webhooktest.New(t, []byte(secret))
		env := start(t, apitest.Options{Dialect: dialect}, rcv, settings{undelivered: time.Minute})
		on, off := redistest.Unique("att-on"), redistest.Unique("att-off")
		online(t, env, on)
		pOn := placeOrder(t, env, on)
		pOff := placeOrder(t, env, off)
		poll.TrueWithin(t, 20*time.Second, "order.undelivered of the offline merchant", func() bool {
			return len(rcv.Of(pOff.OrderNo, wire.AlertUndelivered)) > 0
		})
		if got := rcv.Of(pOn.OrderNo, wire.AlertUndelivered); len(got) != 0 {
			t.Fatalf("order.undelivered for a merchant with a socket online, before UNDELIVERED_AFTER: %+v", got)
		}
		d := rcv.Of(pOff.OrderNo, wire.AlertUndelivered)[0]
		if !d.SigOK {
			t.Fatalf("signature %s does not verify with the secret", d.Body)
		}
		if webhook.Verify([]byte(secret+"x"), d.Body, webhook.Sign([]byte(secret), d.Body)) {
			t.Fatal("a signature verified with another secret")
		}
		if len(d.Problems) > 0 {
			t.Fatalf("malformed webhook request: %v", d.Problems)
		}
		want := webhook.Event{ID: "order.undelivered/" + pOff.OrderNo, Type: wire.AlertUndelivered,
			OrderNo: pOff.OrderNo, MerchantID: off, PlacedAt: pOff.CreatedAt, Online: 0}
		if d.Event != want || d.EventID != want.ID {
			t.Fatalf("webhook %+v (event id header %q), want %+v", d.Event, d.EventID, want)
		}
		var raw map[string]any
		if err := json.Unmarshal(d.Body, &raw); err != nil || len(raw) != 6 {
			t.Fatalf("body %s: want exactly id, type, orderNo, merchantId, placedAt, online", d.Body)
		}
		poll.TrueWithin(t, 10*time.Second, "the alert completed on the order", func() bool {
			a := alertsOf(t, env, off, pOff.OrderNo)
			return len(a) == 1 && a[0].CompletedAt != nil
		})
		a := alertsOf(t, env, off, pOff.OrderNo)[0]
		if a.Type != wire.AlertUndelivered || a.Attempts != 1 || !strings.HasSuffix(a.FiredAt, "Z") || len(a.FiredAt) != 24 {
			t.Fatalf("alert %+v", a)
		}
		if got := alertsOf(t, env, on, pOn.OrderNo); len(got) != 0 {
			t.Fatalf("alerts of an order that fired nothing: %+v", got)
		}
		if n := attempts(t, env.Registry, wire.AlertUndelivered, attention.OutcomeOK); n != 1 {
			t.Fatalf("attempts ok = %v, want 1", n)
		}
	})
}

// An order acked before UNDELIVERED_AFTER never gets order.undelivered:
// its alert is deleted when it comes due, while the order placed beside it
// without an ack does get one.
func TestNoUndeliveredWhenAckedInTime(t *testing.T) {
	apitest.Each(t, func(t *testing.T, dialect string) {
		rcv := webhooktest.New(t, []byte(secret))
		env := start(t, apitest.Options{Dialect: dialect}, rcv, settings{undelivered: 2 * time.Second})
		m := redistest.Unique("att-acked")
		online(t, env, m)
		acked := placeOrder(t, env, m)   // seq 1
		unacked := placeOrder(t, env, m) // seq 2
		if resp := env.Do(t, http.MethodPost, "/merchants/"+m+"/ack", apitest.Token(t, token.RoleMerchant, m), `{"seq":1}`); resp.Status != http.StatusNoContent {
			t.Fatalf("ack: %d %s", resp.Status, resp.Body)
		}
		poll.TrueWithin(t, 20*time.Second, "order.undelivered of the unacked order", func() bool {
			return len(rcv.Of(unacked.OrderNo, wire.AlertUndelivered)) > 0
		})
		poll.TrueWithin(t, 10*time.Second, "the acked order's alert deleted", func() bool {
			return env.Count(t, "alerts WHERE type = 'order.undelivered' AND order_no = '"+acked.OrderNo+"'") == 0
		})
		if got := rcv.Of(acked.OrderNo, wire.AlertUndelivered); len(got) != 0 {
			t.Fatalf("order.undelivered for an order acked in time: %+v", got)
		}
		if a := alertsOf(t, env, m, acked.OrderNo); len(a) != 0 {
			t.Fatalf("alerts of the acked order: %+v", a)
		}
	})
}

// A 500 answer is retried, with backoff, with the same id and body id,
// until a 2xx; the order's alert counts every attempt.
func TestRetriedWithSameID(t *testing.T) {
	apitest.Each(t, func(t *testing.T, dialect string) {
		rcv := webhooktest.New(t, []byte(secret))
		rcv.SetAnswer(func(n int, _ webhook.Event) int {
			if n <= 2 {
				return http.StatusInternalServerError
			}
			return http.StatusNoContent
		})
		env := start(t, apitest.Options{Dialect: dialect}, rcv, settings{})
		m := redistest.Unique("att-retry")
		p := placeOrder(t, env, m)
		poll.TrueWithin(t, 30*time.Second, "three attempts", func() bool {
			return len(rcv.Of(p.OrderNo, wire.AlertUndelivered)) >= 3
		})
		got := rcv.Of(p.OrderNo, wire.AlertUndelivered)
		for i, d := range got {
			if d.EventID != "order.undelivered/"+p.OrderNo || d.Event.ID != d.EventID || !d.SigOK {
				t.Fatalf("attempt %d: id %q / %q, signature ok %v", i+1, d.EventID, d.Event.ID, d.SigOK)
			}
			if i > 0 && d.At.Sub(got[i-1].At) < attention.BackoffBase-10*time.Millisecond {
				t.Fatalf("attempt %d came %s after the previous: under the backoff's 1 s floor", i+1, d.At.Sub(got[i-1].At))
			}
		}
		poll.TrueWithin(t, 10*time.Second, "the alert completed", func() bool {
			a := alertsOf(t, env, m, p.OrderNo)
			return len(a) == 1 && a[0].CompletedAt != nil
		})
		if a := alertsOf(t, env, m, p.OrderNo)[0]; a.Attempts != 3 {
			t.Fatalf("alert %+v, want 3 attempts", a)
		}
		if len(rcv.Of(p.OrderNo, wire.AlertUndelivered)) != 3 {
			t.Fatalf("%d attempts after the 2xx, want 3", len(rcv.Of(p.OrderNo, wire.AlertUndelivered)))
		}
		if e, ok := attempts(t, env.Registry, wire.AlertUndelivered, attention.OutcomeHTTPError),
			attempts(t, env.Registry, wire.AlertUndelivered, attention.OutcomeOK); e != 2 || ok != 1 {
			t.Fatalf("attempts http_error=%v ok=%v, want 2 and 1", e, ok)
		}
	})
}

// order.unseen fires UNSEEN_AFTER after placement, not before; a merchant
// with a socket gets no order.undelivered meanwhile.
func TestUnseenAfter(t *testing.T) {
	apitest.Each(t, func(t *testing.T, dialect string) {
		rcv := webhooktest.New(t, []byte(secret))
		const after = 2 * time.Second
		env := start(t, apitest.Options{Dialect: dialect}, rcv, settings{unseen: after})
		m := redistest.Unique("att-unseen")
		online(t, env, m)
		p := placeOrder(t, env, m)
		placedAt, err := time.Parse(time.RFC3339Nano, p.CreatedAt)
		if err != nil {
			t.Fatal(err)
		}
		poll.TrueWithin(t, 20*time.Second, "order.unseen", func() bool { return len(rcv.Of(p.OrderNo, wire.AlertUnseen)) > 0 })
		d := rcv.Of(p.OrderNo, wire.AlertUnseen)[0]
		if early := d.At.Sub(placedAt); early < after {
			t.Fatalf("order.unseen %s after placement, before UNSEEN_AFTER=%s", early, after)
		}
		if !d.SigOK || d.Event.ID != "order.unseen/"+p.OrderNo || d.Event.Online != 1 || d.Event.MerchantID != m {
			t.Fatalf("webhook %+v, signature ok %v", d.Event, d.SigOK)
		}
		if u := rcv.Of(p.OrderNo, wire.AlertUndelivered); len(u) != 0 {
			t.Fatalf("order.undelivered for a merchant with a socket: %+v", u)
		}
	})
}

// A receiver that never answers holds at most Workers attempts, each ended
// by the attempt timeout, and orders keep being placed meanwhile. A
// redirect is a failed attempt, not followed; an endless answer body is
// not read to its end.
func TestHostileReceivers(t *testing.T) {
	t.Run("bounded", func(t *testing.T) {
		t.Parallel()
		var inFlight, peak atomic.Int32
		release := make(chan struct{})
		rcv := webhooktest.New(t, []byte(secret))
		rcv.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := inFlight.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			select {
			case <-release:
			case <-r.Context().Done():
			}
			inFlight.Add(-1) // before the answer: the sender's slot frees only after it
		})
		env := start(t, apitest.Options{}, rcv, settings{workers: 2})
		m := redistest.Unique("att-bounded")
		const orders = 12
		for range orders {
			placeOrder(t, env, m) // all 201 while the receiver holds every attempt
		}
		for i := range orders {
			poll.TrueWithin(t, 20*time.Second, "two attempts in flight", func() bool { return inFlight.Load() >= 2 || i >= orders-1 })
			release <- struct{}{}
		}
		if p := peak.Load(); p != 2 {
			t.Fatalf("peak %d attempts in flight at once, want Workers=2", p)
		}
	})
	t.Run("silent", func(t *testing.T) {
		t.Parallel()
		rcv := webhooktest.New(t, []byte(secret))
		stop := make(chan struct{})
		rcv.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-stop:
			case <-r.Context().Done():
			}
		})
		t.Cleanup(func() { close(stop) })
		env := start(t, apitest.Options{}, rcv, settings{attemptTimeout: 500 * time.Millisecond})
		m := redistest.Unique("att-silent")
		p := placeOrder(t, env, m)
		poll.TrueWithin(t, 20*time.Second, "two timed-out attempts recorded", func() bool {
			a := alertsOf(t, env, m, p.OrderNo)
			return len(a) == 1 && a[0].Attempts >= 2
		})
		if n := attempts(t, env.Registry, wire.AlertUndelivered, attention.OutcomeTimeout); n < 2 {
			t.Fatalf("%v timeouts counted, want at least 2", n)
		}
		placeOrder(t, env, m)
		if a := alertsOf(t, env, m, p.OrderNo); len(a) != 1 || a[0].CompletedAt != nil {
			t.Fatalf("alerts %+v: want one, not completed", a)
		}
	})
	t.Run("redirect", func(t *testing.T) {
		t.Parallel()
		elsewhere := webhooktest.New(t, []byte(secret))
		rcv := webhooktest.New(t, []byte(secret))
		rcv.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, elsewhere.URL(), http.StatusTemporaryRedirect)
		})
		env := start(t, apitest.Options{}, rcv, settings{})
		placeOrder(t, env, redistest.Unique("att-redirect"))
		poll.TrueWithin(t, 20*time.Second, "a redirect counted as http_error", func() bool {
			return attempts(t, env.Registry, wire.AlertUndelivered, attention.OutcomeHTTPError) >= 1
		})
		if got := elsewhere.Deliveries(); len(got) != 0 {
			t.Fatalf("the redirect was followed: %+v", got)
		}
	})
	t.Run("endless answer", func(t *testing.T) {
		t.Parallel()
		rcv := webhooktest.New(t, []byte(secret))
		rcv.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			chunk := []byte(strings.Repeat("x", 32<<10))
			for r.Context().Err() == nil {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		})
		// Reading the whole answer would never end: the attempt would be a
		// timeout, not ok.
		env := start(t, apitest.Options{}, rcv, settings{attemptTimeout: 3 * time.Second})
		placeOrder(t, env, redistest.Unique("att-endless"))
		poll.TrueWithin(t, 20*time.Second, "the attempt counted", func() bool {
			return attempts(t, env.Registry, wire.AlertUndelivered, attention.OutcomeOK)+
				attempts(t, env.Registry, wire.AlertUndelivered, attention.OutcomeTimeout) >= 1
		})
		if ok := attempts(t, env.Registry, wire.AlertUndelivered, attention.OutcomeOK); ok != 1 {
			t.Fatalf("attempt with an endless 200 answer: ok=%v, want 1", ok)
		}
	})
}

// Two order API replicas on one PostgreSQL database send each alert
// exactly once between them, while both claim at the same time.
func TestTwoReplicasSendEachAlertOnce(t *testing.T) {
	rcv := webhooktest.New(t, []byte(secret))
	var mu sync.Mutex
	rcv.SetAnswer(func(n int, _ webhook.Event) int {
		mu.Lock() // one at a time: requests pile up and both replicas claim meanwhile
		defer mu.Unlock()
		time.Sleep(5 * time.Millisecond) // paces the receiver, not a synchronisation
		return http.StatusOK
	})
	a := start(t, apitest.Options{Dialect: "postgres"}, rcv, settings{unseen: 2 * time.Second})
	b := start(t, apitest.Options{DatabaseURL: a.DatabaseURL}, rcv, settings{unseen: 2 * time.Second})
	const orders = 40
	var nos []string
	for i := range orders {
		env := a
		if i%2 == 1 {
			env = b
		}
		nos = append(nos, placeOrder(t, env, redistest.Unique(fmt.Sprintf("att-two-%d", i%4))).OrderNo)
	}
	poll.TrueWithin(t, 60*time.Second, "both alerts of every order delivered and recorded", func() bool {
		return a.Count(t, "alerts WHERE completed_ms IS NOT NULL") == 2*orders &&
			a.Count(t, "alerts WHERE due_ms IS NOT NULL") == 0
	})
	ids := map[string]int{}
	for _, d := range rcv.Deliveries() {
		ids[d.EventID]++
	}
	for _, no := range nos {
		for _, typ := range []string{wire.AlertUndelivered, wire.AlertUnseen} {
			if n := ids[typ+"/"+no]; n != 1 {
				t.Errorf("%s of %s sent %d times, want once", typ, no, n)
			}
		}
	}
	if len(ids) != 2*orders {
		t.Errorf("%d distinct events, want %d", len(ids), 2*orders)
	}
	sa := attempts(t, a.Registry, wire.AlertUndelivered, attention.OutcomeOK) + attempts(t, a.Registry, wire.AlertUnseen, attention.OutcomeOK)
	sb := attempts(t, b.Registry, wire.AlertUndelivered, attention.OutcomeOK) + attempts(t, b.Registry, wire.AlertUnseen, attention.OutcomeOK)
	t.Logf("replica a sent %v, replica b %v", sa, sb)
	if sa+sb != 2*orders {
		t.Fatalf("ok attempts %v + %v, want %d", sa, sb, 2*orders)
	}
}
