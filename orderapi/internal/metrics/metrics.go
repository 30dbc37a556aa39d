// Package metrics defines the order API's Prometheus metrics. They are
// registered on a registry the caller builds (in main, or per test), never
// on a global one. All labels are bounded: route templates and status codes.
package metrics

import (
	"context"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the order API's collectors. Safe for concurrent use.
type Metrics struct {
	OrdersCreated   prometheus.Counter
	OrdersProcessed prometheus.Counter
	// PublishErrors counts failed Redis publishes, by path: "fast" right
	// after a commit, "relay" from the outbox relay.
	PublishErrors  *prometheus.CounterVec
	RelayPublished prometheus.Counter
	EventsPruned   prometheus.Counter
	NoticesSent    prometheus.Counter
	// OrdersRateLimited counts POST /orders refused over ORDER_RATE;
	// RateLimitFailOpen counts orders let through without asking Redis
	// (it failed or was recently down).
	OrdersRateLimited prometheus.Counter
	RateLimitFailOpen prometheus.Counter
	// OrderDelivered and OrderSeen are the system's real SLO: order placed
	// to its first deliveredAt (a client acked it) and to its first seenAt
	// (a person looked at it, or processed it), in seconds.
	OrderDelivered prometheus.Histogram
	OrderSeen      prometheus.Histogram
	// HTTPDuration is labelled by route template (e.g. /orders/:orderNo),
	// method and status code.
	HTTPDuration *prometheus.HistogramVec
}

// New creates the metrics and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		OrdersCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderapi_orders_created_total", Help: "Orders committed.",
		}),
		OrdersProcessed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderapi_orders_processed_total", Help: "Orders marked processed (first call only).",
		}),
		PublishErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderapi_publish_errors_total", Help: "Failed Redis publishes of committed events.",
		}, []string{"path"}),
		RelayPublished: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderapi_relay_published_total", Help: "Events the outbox relay published after the fast path missed them.",
		}),
		EventsPruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderapi_events_pruned_total", Help: "Event log rows deleted after EVENT_RETENTION.",
		}),
		NoticesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderapi_notices_sent_total", Help: "Notices routed to a gateway replica.",
		}),
		OrdersRateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderapi_orders_rate_limited_total", Help: "Orders refused with 429 over ORDER_RATE.",
		}),
		RateLimitFailOpen: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderapi_rate_limit_fail_open_total", Help: "Orders let through without a rate decision because Redis did not answer.",
		}),
		OrderDelivered: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orderapi_order_delivered_seconds",
			Help:    "Order placed to its first deliveredAt (a client of the merchant acked its event).",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 3, 5, 10, 30, 60, 120, 300, 900, 3600},
		}),
		OrderSeen: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orderapi_order_seen_seconds",
			Help:    "Order placed to its first seenAt (a person saw or processed it).",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 180, 300, 600, 1800, 3600, 4 * 3600},
		}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orderapi_http_request_duration_seconds",
			Help:    "HTTP request duration by route template, method and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method", "code"}),
	}
	m.PublishErrors.WithLabelValues("fast")
	m.PublishErrors.WithLabelValues("relay")
	reg.MustRegister(m.OrdersCreated, m.OrdersProcessed, m.PublishErrors, m.RelayPublished,
		m.EventsPruned, m.NoticesSent, m.OrdersRateLimited, m.RateLimitFailOpen,
		m.OrderDelivered, m.OrderSeen, m.HTTPDuration)
	return m
}

// backlogTimeout bounds the scrape-time count of the outbox backlog.
const backlogTimeout = time.Second

// RegisterBacklog registers orderapi_outbox_backlog on reg: events committed
// but not yet published, counted by count at each scrape (the count is the
// database's, so every replica reports the same number). NaN when the
// database does not answer within a second.
func RegisterBacklog(reg prometheus.Registerer, count func(context.Context) (int64, error)) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "orderapi_outbox_backlog",
		Help: "Events committed but not yet published to Redis (the same on every replica: a database count).",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), backlogTimeout)
		defer cancel()
		n, err := count(ctx)
		if err != nil {
			return math.NaN()
		}
		return float64(n)
	}))
}
