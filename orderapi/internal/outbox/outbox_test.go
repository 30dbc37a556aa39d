package outbox_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"orderpush/orderapi/internal/apitest"
	"orderpush/pkg/poll"
	"orderpush/pkg/rediskey"
	"orderpush/pkg/redistest"
	"orderpush/pkg/stream"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// listener records the seqs published on merchant channels, in arrival
// order.
type listener struct {
	mu   sync.Mutex
	seqs map[string][]uint64
}

// listen subscribes to the merchants' channels and waits for Redis to
// confirm before returning.
func listen(t *testing.T, redisURL string, merchants ...string) *listener {
	t.Helper()
	o, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(o)
	chans := make([]string, len(merchants))
	for i, m := range merchants {
		chans[i] = rediskey.Channel(m)
	}
	ps := rdb.Subscribe(t.Context(), chans...)
	for range chans {
		if _, err := ps.Receive(t.Context()); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
	}
	l := &listener{seqs: map[string][]uint64{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for msg := range ps.Channel() {
			h, err := wire.ParseHead([]byte(msg.Payload))
			if err != nil {
				t.Errorf("bad frame on %s: %s", msg.Channel, msg.Payload)
				continue
			}
			l.mu.Lock()
			m := strings.TrimPrefix(msg.Channel, "merchant:")
			l.seqs[m] = append(l.seqs[m], h.Seq)
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ps.Close()
		<-done
		rdb.Close()
	})
	return l
}

func (l *listener) got(m string) []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seqs[m])
}

func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func post(t *testing.T, env *apitest.Env, tok, merchant string) apitest.Response {
	t.Helper()
	r := env.Do(t, http.MethodPost, "/orders", tok, `{"merchantId":"`+merchant+`","date":"2022-06-22","price":36}`)
	if r.Status != http.StatusCreated {
		t.Fatalf("POST /orders: %d %s", r.Status, r.Body)
	}
	return r
}

// With Redis stopped, orders still commit (201). When Redis comes back
// (empty), the relay publishes every missed event, in seq order per
// merchant, exactly once (issue 3).
func TestRedisDownThenRelay(t *testing.T) {
	apitest.Each(t, func(t *testing.T, dialect string) {
		rs := redistest.Start(t)
		gate := &apitest.Gate{}
		rdb, err := apitest.GatedClient(rs.URL(), gate)
		if err != nil {
			t.Fatal(err)
		}
		env := apitest.Start(t, apitest.Options{Dialect: dialect, RedisURL: rs.URL(), Redis: rdb})
		member := apitest.Token(t, token.RoleMember, "u1")
		a, b := redistest.Unique("m"), redistest.Unique("m")
		post(t, env, member, a)
		post(t, env, member, b)
		poll.TrueWithin(t, 5*time.Second, "the first events marked published", func() bool {
			return env.Count(t, "events WHERE published") == 2
		})

		rs.Stop()
		for range 5 {
			post(t, env, member, a)
			post(t, env, member, b)
		}
		if r := env.Do(t, "GET", "/readyz", "", ""); r.Status != 503 || !strings.Contains(string(r.Body), `"status":"unready"`) {
			t.Errorf("readyz with redis down: %d %s", r.Status, r.Body)
		}
		if env.Count(t, "orders") != 12 || env.Count(t, "events WHERE NOT published") != 10 {
			t.Fatalf("%d orders, %d unpublished events; want 12, 10", env.Count(t, "orders"), env.Count(t, "events WHERE NOT published"))
		}
		down := string(env.Do(t, "GET", "/metrics", "", "").Body)
		for _, want := range []string{"orderapi_outbox_backlog 10\n", "orderapi_redis_up 0\n"} {
			if !strings.Contains(down, want) {
				t.Errorf("metrics with Redis down lack %q: %s", want, grep(down, strings.Fields(want)[0]))
			}
		}

		gate.Close() // hold the relay until we listen
		rs.Start()
		l := listen(t, rs.URL(), a, b)
		gate.Open()
		for _, m := range []string{a, b} {
			poll.TrueWithin(t, 10*time.Second, "relay of "+m, func() bool { return len(l.got(m)) >= 5 })
		}
		poll.TrueWithin(t, 5*time.Second, "all events marked published", func() bool {
			return env.Count(t, "events WHERE NOT published") == 0
		})
		st := stream.New(rs.Client())
		for _, m := range []string{a, b} {
			if got := l.got(m); !slices.Equal(got, seqRange(2, 6)) {
				t.Errorf("merchant %s: published %v; want 2..6 in order, once each", m, got)
			}
			hist, err := st.History(t.Context(), m, 0, 0)
			if err != nil || len(hist) != 5 || hist[0].Seq != 2 || hist[4].Seq != 6 {
				t.Errorf("merchant %s history: %v, %v", m, hist, err)
			}
			if s, err := st.State(t.Context(), m); err != nil || s.Seq != 6 || s.OrderSum != 6 {
				t.Errorf("merchant %s state %+v, %v; want seq 6 orderSum 6", m, s, err)
			}
		}
		metrics := string(env.Do(t, "GET", "/metrics", "", "").Body)
		for _, want := range []string{"orderapi_outbox_backlog 0\n", "orderapi_redis_up 1\n"} {
			if !strings.Contains(metrics, want) {
				t.Errorf("metrics after the relay lack %q: %s", want, grep(metrics, strings.Fields(want)[0]))
			}
		}
		if !strings.Contains(metrics, "orderapi_relay_published_total 10") {
			t.Errorf("relay metric: %s", grep(metrics, "orderapi_relay_published_total"))
		}
		if strings.Contains(metrics, `orderapi_publish_errors_total{path="fast"} 0`) {
			t.Errorf("fast-path publish errors not counted")
		}
	})
}

// Two replicas on one PostgreSQL and one Redis, orders posted concurrently
// through both: every merchant's events are seq 1..N exactly once in the
// event log, in Redis history and on the channel. Then Redis stops, both
// replicas take more orders, Redis returns, and both relays race to publish
// the backlog: still exactly once, and in order per merchant.
func TestTwoReplicasExactlyOnce(t *testing.T) {
	rs := redistest.Start(t)
	db := apitest.DatabaseURL(t, "postgres")
	gate := &apitest.Gate{}
	var envs []*apitest.Env
	for range 2 {
		rdb, err := apitest.GatedClient(rs.URL(), gate)
		if err != nil {
			t.Fatal(err)
		}
		envs = append(envs, apitest.Start(t, apitest.Options{DatabaseURL: db, RedisURL: rs.URL(), Redis: rdb}))
	}
	merchants := []string{redistest.Unique("m"), redistest.Unique("m"), redistest.Unique("m")}
	l := listen(t, rs.URL(), merchants...)
	member := apitest.Token(t, token.RoleMember, "u1")
	const perMerchant = 30
	postAll := func(n int) {
		var wg sync.WaitGroup
		for w := range 6 {
			wg.Go(func() {
				for i := range n {
					post(t, envs[(w+i)%2], member, merchants[(w+i)%len(merchants)])
				}
			})
		}
		wg.Wait()
	}
	postAll(perMerchant * len(merchants) / 6)
	for _, m := range merchants {
		poll.TrueWithin(t, 10*time.Second, "phase 1 of "+m, func() bool { return len(l.got(m)) >= perMerchant })
		checkLog(t, envs, m, perMerchant)
		if got := slices.Sorted(slices.Values(l.got(m))); !slices.Equal(got, seqRange(1, perMerchant)) {
			t.Errorf("merchant %s channel: %v; want 1..%d once each", m, got, perMerchant)
		}
	}

	rs.Stop()
	postAll(perMerchant * len(merchants) / 6)
	gate.Close()
	rs.Start()
	l = listen(t, rs.URL(), merchants...)
	gate.Open()
	for _, m := range merchants {
		poll.TrueWithin(t, 15*time.Second, "relay of "+m, func() bool { return len(l.got(m)) >= perMerchant })
		checkLog(t, envs, m, 2*perMerchant)
		if got := l.got(m); !slices.Equal(got, seqRange(perMerchant+1, 2*perMerchant)) {
			t.Errorf("merchant %s relayed %v; want %d..%d in order, once each", m, got, perMerchant+1, 2*perMerchant)
		}
	}
}

// checkLog asserts that the event log, read through each replica, is seq
// 1..n exactly once.
func checkLog(t *testing.T, envs []*apitest.Env, m string, n int) {
	t.Helper()
	svc := apitest.Token(t, token.RoleService, "ops")
	for i, env := range envs {
		var log struct {
			Events []struct {
				Seq uint64 `json:"seq"`
			} `json:"events"`
		}
		env.Do(t, "GET", fmt.Sprintf("/merchants/%s/events?limit=1000", m), svc, "").Decode(t, &log)
		var seqs []uint64
		for _, e := range log.Events {
			seqs = append(seqs, e.Seq)
		}
		if !slices.Equal(seqs, seqRange(1, uint64(n))) {
			t.Errorf("replica %d, merchant %s event log: %v; want 1..%d", i, m, seqs, n)
		}
	}
}

func grep(s, prefix string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// An event is in Redis when the answer of the request that made it
// arrives: an order's 201 (the group commit publishes before its orders
// are answered), and a process's or first seen's 200.
func TestPublishedBeforeAnswer(t *testing.T) {
	apitest.Each(t, func(t *testing.T, dialect string) {
		env := apitest.Start(t, apitest.Options{Dialect: dialect})
		st := stream.New(redistest.SharedClient(t))
		member := apitest.Token(t, token.RoleMember, "u1")
		m := redistest.Unique("m")
		merchant := apitest.Token(t, token.RoleMerchant, m)
		var orderNos []string
		for seq := uint64(1); seq <= 3; seq++ {
			var o wire.Order
			post(t, env, member, m).Decode(t, &o)
			orderNos = append(orderNos, o.OrderNo)
			if s, err := st.State(t.Context(), m); err != nil || s.Seq != seq {
				t.Fatalf("state after the 201 of order %d: %+v %v", seq, s, err)
			}
		}
		for i, path := range []string{"/orders/" + orderNos[0] + "/process", "/orders/" + orderNos[1] + "/seen"} {
			if r := env.Do(t, http.MethodPost, path, merchant, ""); r.Status != http.StatusOK {
				t.Fatalf("POST %s: %d %s", path, r.Status, r.Body)
			}
			if s, err := st.State(t.Context(), m); err != nil || s.Seq != uint64(4+i) {
				t.Fatalf("state after the 200 of %s: %+v %v", path, s, err)
			}
		}
	})
}
