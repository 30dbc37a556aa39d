package admission

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"orderpush/pkg/config"
	"orderpush/pkg/logging"
	"orderpush/pkg/wire"
)

// Results in gateway_connects_total{result} for each refusal, and the
// limit label of gateway_limit_fail_open_total.
const (
	ResultRateLimited        = "rate_limited"
	ResultTooManyConnections = "too_many_connections"
	ResultMaxConns           = "max_conns"
	LimitPerMerchant         = "max_conns_per_merchant"
)

// Retry-After values for the limits that have no refill time to compute:
// a place frees when some socket closes, which nobody can predict.
const (
	maxConnsRetryAfter    = 5 * time.Second
	perMerchantRetryAfter = 30 * time.Second
)

// DefaultConnectRate is CONNECT_RATE's default (burst twice that).
var DefaultConnectRate = config.Rate{N: 20, Per: time.Second}

// DefaultMaxConnsPerMerchant is MAX_CONNS_PER_MERCHANT's default.
const DefaultMaxConnsPerMerchant = 50

// Config holds the limits; a zero limit is off.
type Config struct {
	TrustedProxies      []netip.Prefix // TRUSTED_PROXIES
	ConnectRate         config.Rate    // CONNECT_RATE, per client IP
	MaxConns            int            // MAX_CONNS, per replica
	MaxConnsPerMerchant int            // MAX_CONNS_PER_MERCHANT, across replicas
	MaxBuckets          int            // remembered client addresses; 0: DefaultMaxBuckets
	Now                 func() time.Time
}

// Reserver counts a merchant's connections across replicas and reserves a
// place for one on this replica (the gateway's presence).
type Reserver interface {
	Reserve(ctx context.Context, connID, merchantID string, limit int) (ok bool, count int, err error)
}

// Admission applies the connect limits.
type Admission struct {
	cfg      Config
	rate     *rateLimiter // nil: CONNECT_RATE off
	reserver Reserver
	connects *prometheus.CounterVec // gateway_connects_total{result}
	failOpen *prometheus.CounterVec // gateway_limit_fail_open_total{limit}
	log      *slog.Logger
	open     atomic.Int64 // sockets holding a Slot: open or connecting
}

// New builds an Admission. connects and failOpen are the gateway's
// counters (labels result and limit).
func New(cfg Config, reserver Reserver, connects, failOpen *prometheus.CounterVec, log *slog.Logger) *Admission {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxBuckets <= 0 {
		cfg.MaxBuckets = DefaultMaxBuckets
	}
	a := &Admission{cfg: cfg, reserver: reserver, connects: connects, failOpen: failOpen, log: log}
	if !cfg.ConnectRate.Off() {
		a.rate = newRateLimiter(cfg.ConnectRate.PerSecond(), cfg.ConnectRate.Burst(), cfg.MaxBuckets)
	}
	for _, r := range []string{ResultRateLimited, ResultTooManyConnections, ResultMaxConns} {
		connects.WithLabelValues(r)
	}
	failOpen.WithLabelValues(LimitPerMerchant)
	return a
}

// Refusal is a connect refused before the upgrade: an HTTP error with
// PROTOCOL.md's body and a Retry-After header.
type Refusal struct {
	Status     int
	Code       string // wire error code
	Message    string
	RetryAfter time.Duration // rounded up to whole seconds, at least 1
	Result     string        // gateway_connects_total's label
}

// Error makes a Refusal usable as an error.
func (r *Refusal) Error() string { return r.Code + ": " + r.Message }

// RetryAfterSeconds is the Retry-After header's value.
func (r *Refusal) RetryAfterSeconds() int {
	return max(int(math.Ceil(r.RetryAfter.Seconds())), 1)
}

// Write answers the request with the refusal.
func (r *Refusal) Write(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Retry-After", strconv.Itoa(r.RetryAfterSeconds()))
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(r.Status)
	body, _ := json.Marshal(wire.NewErrorBody(r.Code, r.Message))
	_, _ = w.Write(append(body, '\n'))
}

// Slot is a place among the replica's MAX_CONNS. Release it when the socket
// ends or the connect fails; Release is idempotent and a nil Slot is valid.
type Slot struct {
	a        *Admission
	released atomic.Bool
}

// Release gives the place back.
func (s *Slot) Release() {
	if s == nil || s.a == nil || !s.released.CompareAndSwap(false, true) {
		return
	}
	s.a.open.Add(-1)
}

// Open is the number of places taken (open sockets and connects in
// progress).
func (a *Admission) Open() int { return int(a.open.Load()) }

// Connect applies CONNECT_RATE to the request's client IP, then MAX_CONNS.
// It is called first thing for every upgrade request, before the token is
// verified, so a flood costs a map lookup, not a signature check. The
// refusal is already counted.
func (a *Admission) Connect(r *http.Request) (*Slot, *Refusal) {
	if a.rate != nil {
		ip, ok := ClientIP(a.cfg.TrustedProxies, r)
		if ok {
			if allowed, wait := a.rate.allow(bucketKey(ip), a.cfg.Now()); !allowed {
				return nil, a.refuse(&Refusal{
					Status: http.StatusTooManyRequests, Code: wire.CodeRateLimited, Result: ResultRateLimited,
					Message: "too many connection attempts from your address; retry after Retry-After seconds", RetryAfter: wait,
				})
			}
		}
	}
	if a.cfg.MaxConns <= 0 {
		return &Slot{}, nil
	}
	if n := a.open.Add(1); n > int64(a.cfg.MaxConns) {
		a.open.Add(-1)
		return nil, a.refuse(&Refusal{
			Status: http.StatusServiceUnavailable, Code: wire.CodeUnavailable, Result: ResultMaxConns,
			Message: "this replica is full; retry after Retry-After seconds (any replica)", RetryAfter: maxConnsRetryAfter,
		})
	}
	return &Slot{a: a}, nil
}

// Merchant reserves connID's place among merchantID's connections across
// all replicas (MAX_CONNS_PER_MERCHANT). On success the place is the
// connection's presence entry: removing the connection from presence
// frees it. Redis failing lets the connect through (counted): a limit must
// not turn a Redis outage into an outage of the sockets.
func (a *Admission) Merchant(ctx context.Context, connID, merchantID string) *Refusal {
	if a.cfg.MaxConnsPerMerchant <= 0 || a.reserver == nil {
		return nil
	}
	ok, n, err := a.reserver.Reserve(ctx, connID, merchantID, a.cfg.MaxConnsPerMerchant)
	if err != nil {
		a.failOpen.WithLabelValues(LimitPerMerchant).Inc()
		a.log.LogAttrs(ctx, slog.LevelWarn, "merchant connection cap not checked (Redis), admitting",
			slog.String(logging.KeyMerchant, merchantID), logging.Err(err))
		return nil
	}
	if ok {
		return nil
	}
	return a.refuse(&Refusal{
		Status: http.StatusTooManyRequests, Code: wire.CodeTooManyConnections, Result: ResultTooManyConnections,
		Message:    "this merchant has " + strconv.Itoa(n) + " open connections, the most allowed; close one or retry later",
		RetryAfter: perMerchantRetryAfter,
	})
}

func (a *Admission) refuse(r *Refusal) *Refusal {
	a.connects.WithLabelValues(r.Result).Inc()
	return r
}
