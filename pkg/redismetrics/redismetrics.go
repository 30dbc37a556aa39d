// Package redismetrics measures a service's use of Redis for Prometheus:
// every command and pipeline round trip (duration and failures) through a
// go-redis hook, and whether Redis answers right now (a PING at scrape
// time), under the binary's own metric prefix:
//
//	<prefix>_redis_roundtrip_seconds{kind="command|pipeline"}  histogram
//	<prefix>_redis_errors_total{kind="command|pipeline"}        counter, no answer
//	<prefix>_redis_up                                           gauge, 1 or 0
//
// Pub/sub reads are not round trips and are not measured here. Everything
// is safe for concurrent use.
package redismetrics

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// pingTimeout bounds the scrape-time PING, so a Redis that does not answer
// costs a scrape one second, not the scrape timeout.
const pingTimeout = time.Second

// Kinds of round trips, the only label values.
const (
	KindCommand  = "command"
	KindPipeline = "pipeline"
)

// Instrument adds the round-trip hook to rdb and registers the three
// metrics on reg, named with prefix ("gateway", "orderapi").
func Instrument(rdb redis.UniversalClient, reg prometheus.Registerer, prefix string) {
	rdb.AddHook(NewHook(reg, prefix))
	RegisterUp(rdb, reg, prefix)
}

// NewHook returns a go-redis hook that measures round trips, registering
// <prefix>_redis_roundtrip_seconds and <prefix>_redis_errors_total on reg.
func NewHook(reg prometheus.Registerer, prefix string) redis.Hook {
	h := &hook{
		rtt: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    prefix + "_redis_roundtrip_seconds",
			Help:    "Redis round trips (one command, or one pipeline) by kind, including failed ones.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"kind"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "_redis_errors_total",
			Help: "Redis round trips that got no answer (network error, timeout), by kind.",
		}, []string{"kind"}),
	}
	for _, k := range []string{KindCommand, KindPipeline} {
		h.rtt.WithLabelValues(k)
		h.errs.WithLabelValues(k)
	}
	reg.MustRegister(h.rtt, h.errs)
	return h
}

// RegisterUp registers <prefix>_redis_up on reg: a PING to rdb at each
// scrape, bounded to a second.
func RegisterUp(rdb redis.UniversalClient, reg prometheus.Registerer, prefix string) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: prefix + "_redis_up",
		Help: "1 when Redis answered a PING at scrape time (within 1 s), else 0.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), probeKey{}, true), pingTimeout)
		defer cancel()
		if rdb.Ping(ctx).Err() != nil {
			return 0
		}
		return 1
	}))
}

// probeKey marks the scrape's own PING: it is not the service's traffic, so
// the round-trip metrics leave it out.
type probeKey struct{}

func probe(ctx context.Context) bool { return ctx.Value(probeKey{}) != nil }

type hook struct {
	rtt  *prometheus.HistogramVec
	errs *prometheus.CounterVec
}

// DialHook implements redis.Hook; dials are not round trips.
func (h *hook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return next(ctx, network, addr)
	}
}

// ProcessHook implements redis.Hook: one command, one round trip.
func (h *hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	rtt, errs := h.rtt.WithLabelValues(KindCommand), h.errs.WithLabelValues(KindCommand)
	return func(ctx context.Context, cmd redis.Cmder) error {
		if probe(ctx) {
			return next(ctx, cmd)
		}
		start := time.Now()
		err := next(ctx, cmd)
		rtt.Observe(time.Since(start).Seconds())
		if failed(err) {
			errs.Inc()
		}
		return err
	}
}

// ProcessPipelineHook implements redis.Hook: a pipeline (or MULTI/EXEC) is
// one round trip however many commands it carries.
func (h *hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	rtt, errs := h.rtt.WithLabelValues(KindPipeline), h.errs.WithLabelValues(KindPipeline)
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if probe(ctx) {
			return next(ctx, cmds)
		}
		start := time.Now()
		err := next(ctx, cmds)
		rtt.Observe(time.Since(start).Seconds())
		if failed(err) {
			errs.Inc()
		}
		return err
	}
}

// failed reports a round trip that got no answer: a network error or a
// timeout. redis.Nil ("no such key") and error replies (Redis answered, for
// example to a command an older server does not know, which go-redis sends
// on every new connection) are answers.
func failed(err error) bool {
	var reply redis.Error
	return err != nil && !errors.Is(err, redis.Nil) && !errors.As(err, &reply)
}
