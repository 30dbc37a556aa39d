package attention

import "github.com/prometheus/client_golang/prometheus"

// Outcomes of one webhook attempt, the outcome label's only values.
const (
	OutcomeOK        = "ok"         // 2xx
	OutcomeHTTPError = "http_error" // any other status, redirects included
	OutcomeTimeout   = "timeout"    // no answer within the attempt timeout
	OutcomeError     = "error"      // connection refused, TLS, DNS, ...
)

// Metrics are the webhook's collectors. Safe for concurrent use.
type Metrics struct {
	// Attempts is orderapi_webhook_attempts_total{type,outcome}.
	Attempts *prometheus.CounterVec
	// Pending is orderapi_alerts_pending: alerts that fired and wait for a
	// 2xx, counted in the database, so every replica reports the same
	// cluster-wide number (aggregate with max, not sum).
	Pending prometheus.Gauge
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderapi_webhook_attempts_total",
			Help: "Attention webhook attempts by alert type and outcome (ok, http_error, timeout, error).",
		}, []string{"type", "outcome"}),
		Pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderapi_alerts_pending",
			Help: "Attention alerts that fired and wait for a 2xx answer (database-wide; every replica reports it).",
		}),
	}
	for _, t := range []string{"order.undelivered", "order.unseen"} {
		for _, o := range []string{OutcomeOK, OutcomeHTTPError, OutcomeTimeout, OutcomeError} {
			m.Attempts.WithLabelValues(t, o)
		}
	}
	reg.MustRegister(m.Attempts, m.Pending)
	return m
}
