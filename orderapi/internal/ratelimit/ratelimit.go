// Package ratelimit is the order API's cluster-wide per-member order rate
// (ORDER_RATE, PROTOCOL.md "Limits and hostile clients"): one atomic GCRA
// script per decision in Redis, so every order API replica shares one
// budget per member. Redis failing never stops orders: the limiter then
// allows (fails open), counts it, and stops asking Redis for a second so a
// dead Redis does not add its timeout to every order.
//
// A Limiter is safe for concurrent use.
package ratelimit

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"orderpush/pkg/config"
	"orderpush/pkg/logging"
)

//go:embed gcra.lua
var gcraSrc string

var gcraScript = redis.NewScript(gcraSrc)

// Defaults.
const (
	// DefaultTimeout bounds one Redis call: a hung Redis costs an order at
	// most this, and only the orders in flight when it hangs (then Backoff
	// applies). Generous on purpose: under a flood the call also waits for
	// a pooled connection, and timing out there would open the limit to
	// the very flood it is for (measured: 100 concurrent orders on a busy
	// 2-core machine under -race waited over 500 ms).
	DefaultTimeout = 2 * time.Second
	// DefaultBackoff is how long the limiter fails open without asking
	// Redis after a Redis error.
	DefaultBackoff = time.Second
)

// Config is a Limiter's setting and collaborators.
type Config struct {
	Rate config.Rate
	// Key maps a subject to its Redis key (rediskey.OrderRate).
	Key func(subject string) string
	// Limited counts refusals; FailOpen counts decisions made without
	// Redis. Both required.
	Limited, FailOpen prometheus.Counter
	Logger            *slog.Logger
	Timeout, Backoff  time.Duration // zero: defaults
	Now               func() time.Time
}

// Limiter decides whether one more event of a subject is within the rate.
type Limiter struct {
	cfg Config
	rdb redis.UniversalClient

	mu        sync.Mutex
	pauseTill time.Time // fail open without Redis until then (guarded by mu)
}

// New returns a Limiter on rdb. A Rate that is off allows everything
// without touching Redis.
func New(rdb redis.UniversalClient, cfg Config) *Limiter {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Limiter{cfg: cfg, rdb: rdb}
}

// Allow takes one event of subject from its budget. When the budget is
// spent it returns false and how long until one event is allowed again.
func (l *Limiter) Allow(ctx context.Context, subject string) (bool, time.Duration) {
	if l == nil || l.cfg.Rate.Off() {
		return true, 0
	}
	if l.paused() {
		l.cfg.FailOpen.Inc()
		return true, 0
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	ok, wait, err := l.run(ctx, subject)
	if err != nil {
		l.pause()
		l.cfg.FailOpen.Inc()
		l.cfg.Logger.Warn("order rate limit fails open: redis did not answer", logging.Err(err), "for", l.cfg.Backoff)
		return true, 0
	}
	if !ok {
		l.cfg.Limited.Inc()
	}
	return ok, wait
}

func (l *Limiter) run(ctx context.Context, subject string) (bool, time.Duration, error) {
	r := l.cfg.Rate
	interval := r.Per.Microseconds() / int64(r.N) // N <= 1,000,000: at least 1 µs
	res, err := gcraScript.Run(ctx, l.rdb, []string{l.cfg.Key(subject)}, interval, r.Burst()).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("rate script: %w", err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("rate script: unexpected answer %v", res)
	}
	return res[0] == 1, time.Duration(res[1]) * time.Microsecond, nil
}

func (l *Limiter) paused() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg.Now().Before(l.pauseTill)
}

func (l *Limiter) pause() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pauseTill = l.cfg.Now().Add(l.cfg.Backoff)
}

// RetryAfter is wait in the whole seconds of an HTTP Retry-After header,
// rounded up and at least 1.
func RetryAfter(wait time.Duration) int {
	s := int((wait + time.Second - 1) / time.Second)
	return max(s, 1)
}
