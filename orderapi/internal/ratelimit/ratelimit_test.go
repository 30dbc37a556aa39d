package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"orderpush/orderapi/internal/ratelimit"
	"orderpush/pkg/config"
	"orderpush/pkg/rediskey"
	"orderpush/pkg/redistest"
)

func counters() (limited, failOpen prometheus.Counter) {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "l"}), prometheus.NewCounter(prometheus.CounterOpts{Name: "f"})
}

func newLimiter(rdb redis.UniversalClient, rate config.Rate) (*ratelimit.Limiter, prometheus.Counter, prometheus.Counter) {
	limited, failOpen := counters()
	return ratelimit.New(rdb, ratelimit.Config{
		Rate: rate, Key: rediskey.OrderRate, Limited: limited, FailOpen: failOpen,
	}), limited, failOpen
}

// Two limiters on one Redis, as two order API replicas: together they allow
// exactly the burst, then refuse with the time the next event takes; the
// key expires once it no longer matters.
func TestSharedBudgetAcrossReplicas(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	rate := config.Rate{N: 5, Per: time.Minute} // burst 10, one more every 12 s
	var limiters []*ratelimit.Limiter
	var limitedCounters []prometheus.Counter
	for range 2 {
		o, err := redis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		rdb := redis.NewClient(o)
		t.Cleanup(func() { rdb.Close() })
		l, limited, _ := newLimiter(rdb, rate)
		limiters = append(limiters, l)
		limitedCounters = append(limitedCounters, limited)
	}
	member := redistest.Unique("u")
	ctx := context.Background()
	for i := range rate.Burst() {
		if ok, _ := limiters[i%2].Allow(ctx, member); !ok {
			t.Fatalf("event %d of the burst %d refused", i+1, rate.Burst())
		}
	}
	for i := range 2 {
		ok, wait := limiters[i].Allow(ctx, member)
		if ok {
			t.Fatalf("replica %d allowed event %d over the burst", i, rate.Burst()+1)
		}
		if wait <= 10*time.Second || wait > 12*time.Second {
			t.Errorf("replica %d: wait %s, want just under 12s", i, wait)
		}
		if got := testutil.ToFloat64(limitedCounters[i]); got != 1 {
			t.Errorf("replica %d counted %v refusals, want 1", i, got)
		}
	}
	// Another member has a budget of its own.
	if ok, _ := limiters[0].Allow(ctx, redistest.Unique("u")); !ok {
		t.Fatal("another member refused")
	}
	o, _ := redis.ParseURL(url)
	rdb := redis.NewClient(o)
	defer rdb.Close()
	ttl, err := rdb.PTTL(ctx, rediskey.OrderRate(member)).Result()
	if err != nil || ttl <= 0 || ttl > 2*time.Minute {
		t.Fatalf("rate key TTL %s, %v; want (0, 2m]", ttl, err)
	}
	if ratelimit.RetryAfter(11500*time.Millisecond) != 12 || ratelimit.RetryAfter(time.Millisecond) != 1 || ratelimit.RetryAfter(0) != 1 {
		t.Error("RetryAfter does not round up to whole seconds")
	}
}

// The allowance comes back at the rate: after the burst, waiting one
// interval buys exactly one more event.
func TestRefill(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(mustParse(t, redistest.SharedURL(t)))
	defer rdb.Close()
	l, _, _ := newLimiter(rdb, config.Rate{N: 10, Per: time.Second}) // burst 20, 100 ms each
	member := redistest.Unique("u")
	ctx := context.Background()
	for range 20 {
		if ok, _ := l.Allow(ctx, member); !ok {
			t.Fatal("burst refused")
		}
	}
	ok, wait := l.Allow(ctx, member)
	if ok || wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("over the burst: %v, wait %s", ok, wait)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ok, _ := l.Allow(ctx, member); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the allowance never came back")
		}
		time.Sleep(10 * time.Millisecond) // poll interval, bounded by the deadline
	}
	if ok, _ := l.Allow(ctx, member); ok {
		t.Fatal("two events allowed right after one interval")
	}
}

// Redis down: every decision allows, each is counted, and after the first
// failure the limiter does not wait on Redis again for the backoff.
func TestFailOpen(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client()
	defer rdb.Close()
	limited, failOpen := counters()
	l := ratelimit.New(rdb, ratelimit.Config{
		Rate: config.Rate{N: 1, Per: time.Minute}, Key: rediskey.OrderRate,
		Limited: limited, FailOpen: failOpen, Backoff: time.Hour,
	})
	member := redistest.Unique("u")
	ctx := context.Background()
	for range 2 {
		if ok, _ := l.Allow(ctx, member); !ok {
			t.Fatal("burst refused")
		}
	}
	if ok, _ := l.Allow(ctx, member); ok {
		t.Fatal("over the limit allowed while Redis answers")
	}
	srv.Stop()
	for i := range 5 {
		start := time.Now()
		if ok, _ := l.Allow(ctx, member); !ok {
			t.Fatalf("decision %d with Redis down refused", i)
		}
		if i > 0 && time.Since(start) > 100*time.Millisecond {
			t.Errorf("decision %d waited %s for a Redis known to be down", i, time.Since(start))
		}
	}
	if got := testutil.ToFloat64(failOpen); got != 5 {
		t.Errorf("fail-open counter %v, want 5", got)
	}
	if got := testutil.ToFloat64(limited); got != 1 {
		t.Errorf("limited counter %v, want 1", got)
	}
}

func TestOff(t *testing.T) {
	t.Parallel()
	// No Redis at all: an off limiter never asks.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	l, _, failOpen := newLimiter(rdb, config.Rate{})
	for range 100 {
		if ok, _ := l.Allow(context.Background(), "u1"); !ok {
			t.Fatal("off limiter refused")
		}
	}
	if testutil.ToFloat64(failOpen) != 0 {
		t.Fatal("off limiter asked Redis")
	}
}

func mustParse(t *testing.T, url string) *redis.Options {
	t.Helper()
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
