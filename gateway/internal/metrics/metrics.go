// Package metrics holds the gateway's Prometheus collectors. They are built
// on a registry passed in by main (no package-level state), and every other
// package receives the *Metrics it reports to. Labels are bounded: no
// merchant or connection ids.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Gap-fill sources, the values of the "source" label.
const (
	SourceHistory  = "history"
	SourceEventLog = "eventlog"
)

// Resync reasons, the values of the "reason" label.
const (
	ResyncSinceAhead = "since_ahead" // since above the merchant's seq
	ResyncReplay     = "replay"      // a reconnect's gap nobody could fill
	ResyncGap        = "gap"         // a live gap nobody could fill
)

// Metrics are the gateway's collectors.
type Metrics struct {
	ConnectionsOpen    *prometheus.GaugeVec   // transport
	Connects           *prometheus.CounterVec // result
	FramesSent         prometheus.Counter
	WebSocketMessages  prometheus.Counter
	Replays            prometheus.Counter
	ReplayedFrames     prometheus.Counter
	Resyncs            *prometheus.CounterVec // reason
	GapsFilled         *prometheus.CounterVec // source; events filled
	SlowConsumerCloses prometheus.Counter
	RedisReconnects    prometheus.Counter
	RedisMessages      prometheus.Counter
	BadFrames          prometheus.Counter
	DuplicateFrames    prometheus.Counter
	Subscriptions      prometheus.Gauge
	Notices            *prometheus.CounterVec // result
	ProcessForwards    *prometheus.CounterVec // result
	ReceiptsForwarded  *prometheus.CounterVec // kind, result (package receipts)
	DeliveryLag        prometheus.Histogram
	OrderAPIErrors     prometheus.Counter
	PresenceErrors     prometheus.Counter
	// Limits on what a connection sends (PROTOCOL.md "Limits and hostile clients").
	ClientFramesLimited prometheus.Counter
	FloodCloses         prometheus.Counter
	DeadPeerCloses      prometheus.Counter
	LimitFailOpen       *prometheus.CounterVec // limit: checks skipped because Redis failed
}

// Receipt kinds, the values of the "kind" label.
const (
	ReceiptAck  = "ack"
	ReceiptSeen = "seen"
)

// Transports, the values of the "transport" label.
const (
	TransportWS       = "ws"
	TransportSSE      = "sse"
	TransportSocketIO = "socketio"
)

// New registers the collectors on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ConnectionsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gateway_connections_open", Help: "Merchant connections open on this replica, by transport (ws, sse, socketio).",
		}, []string{"transport"}),
		Connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_connects_total", Help: "Socket upgrade attempts by result (ok, unauthorized, forbidden, origin, bad_since, draining, unavailable, upgrade_failed, rate_limited, too_many_connections, max_conns).",
		}, []string{"result"}),
		FramesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_frames_sent_total", Help: "Frames written to sockets (one per socket per frame).",
		}),
		WebSocketMessages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_ws_messages_sent_total", Help: "WebSocket messages written (lower than frames when batching).",
		}),
		Replays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_replays_total", Help: "Connections with since that were replayed missed events.",
		}),
		ReplayedFrames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_replayed_frames_total", Help: "Frames sent by replays.",
		}),
		Resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_resyncs_total", Help: "resync frames sent, by reason (since_ahead, replay, gap).",
		}, []string{"reason"}),
		GapsFilled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_gap_events_filled_total", Help: "Missing merchant events filled in the live stream, by source (history, eventlog).",
		}, []string{"source"}),
		SlowConsumerCloses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_slow_consumer_closes_total", Help: "Sockets closed with 1013 because their send queue was full.",
		}),
		RedisReconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_redis_reconnects_total", Help: "Redis pub/sub connections re-established (each is followed by a back-fill).",
		}),
		RedisMessages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_redis_messages_total", Help: "Messages received from Redis pub/sub.",
		}),
		BadFrames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_bad_frames_total", Help: "Frames on a merchant channel that were not valid frames (dropped).",
		}),
		DuplicateFrames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_duplicate_frames_total", Help: "Merchant events received again after delivery (dropped).",
		}),
		Subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_merchant_subscriptions", Help: "Merchant channels this replica is subscribed to.",
		}),
		Notices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_notices_total", Help: "Notices received for this replica, by result (delivered, unknown_conn, bad, full).",
		}, []string{"result"}),
		ProcessForwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_process_forwards_total", Help: "Socket process frames forwarded to the order API, by result (ok, rejected, error).",
		}, []string{"result"}),
		ReceiptsForwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_receipts_forwarded_total",
			Help: "Socket receipts by kind (ack, seen) and result: ok, rejected, error (given up after retrying) count receipts after coalescing, one per batch item (rejected: skipped or refused by the order API, and acks refused by the gateway); dropped counts receipts never sent (no ORDERAPI_URL, pending cap, closing).",
		}, []string{"kind", "result"}),
		DeliveryLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gateway_delivery_lag_seconds",
			Help:    "Publish time carried in the frame (ts) to socket write, for live frames.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		OrderAPIErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_orderapi_errors_total", Help: "Failed calls to the order API (summary, events).",
		}),
		PresenceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_presence_errors_total", Help: "Failed presence writes (retried on the next beat or reconnect).",
		}),
		ClientFramesLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_client_frames_limited_total", Help: "Client messages dropped because their connection was over CLIENT_MSG_RATE.",
		}),
		FloodCloses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_flood_closes_total", Help: "Connections closed with 1008 for flooding messages over CLIENT_MSG_RATE.",
		}),
		DeadPeerCloses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_dead_peer_closes_total", Help: "Connections closed because their peer did not answer a ping within PING_TIMEOUT.",
		}),
		LimitFailOpen: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_limit_fail_open_total", Help: "Connects let through unchecked because Redis failed, by limit (max_conns_per_merchant).",
		}, []string{"limit"}),
	}
	reg.MustRegister(m.LimitFailOpen, m.ConnectionsOpen, m.Connects, m.FramesSent, m.WebSocketMessages, m.Replays,
		m.ReplayedFrames, m.Resyncs, m.GapsFilled, m.SlowConsumerCloses, m.RedisReconnects,
		m.RedisMessages, m.BadFrames, m.DuplicateFrames, m.Subscriptions, m.Notices,
		m.ProcessForwards, m.ReceiptsForwarded, m.DeliveryLag, m.OrderAPIErrors, m.PresenceErrors,
		m.ClientFramesLimited, m.FloodCloses, m.DeadPeerCloses)
	// Export every known series from the start, at zero, so rates and
	// alerts work before the first event.
	for _, r := range []string{ResyncSinceAhead, ResyncReplay, ResyncGap} {
		m.Resyncs.WithLabelValues(r)
	}
	for _, s := range []string{SourceHistory, SourceEventLog} {
		m.GapsFilled.WithLabelValues(s)
	}
	for _, r := range []string{"ok", "unauthorized", "forbidden", "origin", "bad_since", "draining", "unavailable", "upgrade_failed"} {
		m.Connects.WithLabelValues(r)
	}
	for _, r := range []string{"delivered", "unknown_conn", "bad", "full"} {
		m.Notices.WithLabelValues(r)
	}
	for _, t := range []string{TransportWS, TransportSSE, TransportSocketIO} {
		m.ConnectionsOpen.WithLabelValues(t)
	}
	for _, r := range []string{"ok", "rejected", "error"} {
		m.ProcessForwards.WithLabelValues(r)
	}
	for _, k := range []string{ReceiptAck, ReceiptSeen} {
		for _, r := range []string{"ok", "rejected", "error", "dropped"} {
			m.ReceiptsForwarded.WithLabelValues(k, r)
		}
	}
	return m
}
