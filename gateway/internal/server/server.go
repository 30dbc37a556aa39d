// Package server assembles the gateway: the Echo HTTP server with the socket
// endpoint, health and metrics, the Redis subscriber, the hub, presence, the
// receipts forwarder and the SIGTERM drain (PROTOCOL.md "Merchant socket",
// "Running it").
//
// A Server is built by New and runs once: Serve (or Run) blocks until its
// context ends and then drains.
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"orderpush/gateway/internal/admission"
	"orderpush/gateway/internal/backfill"
	"orderpush/gateway/internal/hub"
	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/orderapi"
	"orderpush/gateway/internal/presence"
	"orderpush/gateway/internal/receipts"
	"orderpush/gateway/internal/session"
	"orderpush/gateway/internal/sidroute"
	"orderpush/gateway/internal/subscriber"
	"orderpush/gateway/internal/transport/socketio"
	"orderpush/gateway/web"
	"orderpush/pkg/logging"
	redispresence "orderpush/pkg/presence"
	"orderpush/pkg/redismetrics"
	"orderpush/pkg/stream"
	"orderpush/pkg/token"
)

// drainBudget is how long the drain may take: PROTOCOL.md wants exit within
// 10 s of SIGTERM.
const drainBudget = 9 * time.Second

// idleTimeout closes keep-alive HTTP connections (health checks,
// metrics scrapes, dashboard assets) that sit unused; upgraded sockets are
// not HTTP connections any more and are not affected.
const idleTimeout = 2 * time.Minute

// defaultReadTimeout bounds reading a request's headers and body (a
// slow-body client holds a connection and a goroutine). It does not cut
// connections that live on: net/http clears the read deadline when a
// WebSocket or an SSE stream takes the connection over and when it starts
// its background read after the body (so a long-poll is not cut), and the
// gateway sets no WriteTimeout, which would cut them
// (TestStreamSurvivesReadTimeout, TestReadTimeout).
const defaultReadTimeout = 30 * time.Second

// joinTimeout bounds the connect sequence before the upgrade (presence,
// subscribe, state).
const joinTimeout = 5 * time.Second

// Server is one gateway replica.
type Server struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics.Metrics
	gatherer prometheus.Gatherer
	rdb      redis.UniversalClient
	presence *presence.Presence[*session.Session] // registry, heartbeat, notices
	verifier *token.Verifier
	admit    *admission.Admission // connect limits, before the upgrade
	api      *orderapi.Client     // nil without ORDERAPI_URL
	receipts *receipts.Forwarder  // socket acks and seen, to the order API
	hub      *hub.Hub
	subs     *subscriber.Subscriber
	sio      *socketio.Server
	route    *sidroute.Router
	echo     *echo.Echo
	http     *http.Server
	web      *web.Handler // the dashboard and /client.js

	base     context.Context // lives until the server stopped; parent of socket work
	stop     context.CancelFunc
	draining atomic.Bool
	handlers sync.WaitGroup // socket handlers
	bg       sync.WaitGroup // presence.Run

	mu sync.Mutex // orders enter (handlers.Add) against the start of the drain

	// connState, when set (tests), sees every HTTP connection's state.
	connState func(net.Conn, http.ConnState)
}

// New builds a server from cfg. reg receives the metrics and is what
// /metrics serves.
func New(cfg Config, log *slog.Logger, reg *prometheus.Registry) (*Server, error) {
	verifier, err := token.NewVerifier(cfg.JWT)
	if err != nil {
		return nil, err
	}
	if cfg.Redis.Single == nil && cfg.Redis.Cluster == nil {
		return nil, errors.New("REDIS_URL: not configured")
	}
	s := &Server{
		cfg:      cfg,
		log:      log,
		m:        metrics.New(reg),
		gatherer: reg,
		verifier: verifier,
	}
	if cfg.OrderAPIURL != "" {
		s.api, err = orderapi.New(orderapi.Config{BaseURL: cfg.OrderAPIURL, Token: cfg.OrderAPIToken, Secret: cfg.JWT.Secret})
		if err != nil {
			return nil, fmt.Errorf("ORDERAPI_URL: %w", err)
		}
	}
	s.rdb = cfg.Redis.NewRedis("gateway:" + cfg.NodeID)
	redismetrics.Instrument(s.rdb, reg, "gateway")
	// The MAX_CONNS limit as a metric, so an alert can compare the open
	// sockets with it (0: no cap).
	maxConns := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gateway_max_conns", Help: "MAX_CONNS: sockets this replica accepts before answering 503 (0: no cap).",
	})
	maxConns.Set(float64(cfg.MaxConns))
	reg.MustRegister(maxConns)
	store := stream.New(s.rdb)
	var api backfill.API
	var rcptAPI receipts.API // nil without ORDERAPI_URL: receipts are dropped
	if s.api != nil {
		api, rcptAPI = s.api, s.api
	}
	src := backfill.New(store, api, log, s.m)
	s.receipts = receipts.New(receipts.Config{}, rcptAPI, log, s.m)
	// The subscriber delivers to presence (the node channel) and the hub
	// (merchant channels); both subscribe through it, so the router is
	// filled once they exist, before anything subscribes.
	route := new(presence.Router)
	s.subs = subscriber.New(s.rdb, route, log, s.m)
	s.presence = presence.New[*session.Session](presence.Config{
		Node: cfg.NodeID, BeatInterval: cfg.BeatInterval, TTL: cfg.PresenceTTL,
	}, presence.Deps{Redis: s.rdb, Subscriber: s.subs, Log: log, Metrics: s.m})
	s.hub = hub.New(hub.Config{
		Node: cfg.NodeID, GapWait: cfg.GapWait, ReplayMax: uint64(max(cfg.ReplayMax, 0)), Buffer: cfg.SendQueueSize,
	}, s.subs, src, log, s.m)
	*route = presence.NewRouter(s.presence, s.hub)
	s.admit = admission.New(admission.Config{
		TrustedProxies: cfg.TrustedProxies, ConnectRate: cfg.ConnectRate, MaxConns: cfg.MaxConns,
		MaxConnsPerMerchant: cfg.MaxConnsPerMerchant,
	}, s.presence, s.m.Connects, s.m.LimitFailOpen, log)
	if s.web, err = web.New(web.Options{APIURL: cfg.DashboardAPIURL}); err != nil {
		return nil, err
	}
	s.base, s.stop = context.WithCancel(context.Background())
	s.route = sidroute.New(sidroute.Config{
		Node: cfg.NodeID, Self: cfg.AdvertiseURL,
		TTL: cmp.Or(cfg.PresenceTTL, redispresence.DefaultTTL), Beat: cmp.Or(cfg.BeatInterval, redispresence.DefaultBeatInterval),
		PollTimeout: cfg.PingInterval + 30*time.Second,
	}, s.rdb, log)
	s.sio = s.newSocketIO()
	s.echo = s.routes()
	return s, nil
}

// Run listens on cfg.Addr and serves until ctx ends, then drains.
func (s *Server) Run(ctx context.Context) error {
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("GATEWAY_ADDR: %w", err)
	}
	return s.Serve(ctx, l)
}

// Serve serves on l until ctx ends, then drains: readiness goes 503, new
// sockets are refused, open ones get 1001 spread over DrainSpread, presence
// is removed. It returns nil after a clean drain.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.http = &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       s.cfg.readTimeout(),
		IdleTimeout:       idleTimeout,
		ConnState:         s.connState,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	// Alive before the first socket registers, so no reader takes its
	// presence entry for a dead replica's: Run beats first, then Ready.
	s.bg.Go(func() { _ = s.presence.Run(s.base) })
	s.bg.Go(func() { s.route.Run(s.base) })
	// Ends with s.base in shutdownRedis, after the drain's sockets are
	// gone, and sends what they acked and saw last.
	s.bg.Go(func() { s.receipts.Run(s.base) })
	<-s.presence.Ready()
	if s.cfg.PprofAddr != "" {
		stopPprof, err := s.servePprof()
		if err != nil {
			s.shutdownRedis()
			return err
		}
		defer stopPprof()
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "gateway listening", slog.String(logging.KeyAddr, l.Addr().String()))
	served := make(chan error, 1)
	go func() { served <- s.http.Serve(l) }()
	select {
	case <-ctx.Done():
	case err := <-served:
		s.shutdownRedis()
		return fmt.Errorf("serve: %w", err)
	}
	dctx, cancel := context.WithTimeout(context.Background(), drainBudget)
	defer cancel()
	err := s.drain(dctx)
	if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// drain is the SIGTERM sequence, bounded by ctx. The listener stays open
// while sockets are closed, so the balancer sees /readyz 503 and new
// upgrades get 503 (PROTOCOL.md) rather than refused connections.
func (s *Server) drain(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	s.mu.Unlock()
	s.log.LogAttrs(ctx, slog.LevelInfo, "draining", slog.Int("sockets", s.presence.Len()))
	// Stop counting this replica's sockets at once; they are leaving.
	if err := s.presence.Leave(ctx); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "presence leave failed", logging.Err(err))
	}
	// socket.io clients without an admitted CONNECT are not sessions yet:
	// they go at once; the others are among the sockets.
	s.sio.Stop()
	s.closeSockets(ctx)
	waited := make(chan struct{})
	go func() {
		s.handlers.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-ctx.Done():
		for _, c := range s.presence.Conns() {
			c.Abort()
		}
		<-waited
	}
	_ = s.http.Shutdown(ctx) // stops listening, lets plain requests finish
	s.shutdownRedis()
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "drained")
	return nil
}

// closeSockets sends 1001 to every socket, spread evenly over DrainSpread
// so the clients do not all reconnect to the other replicas in the same
// instant (in batches every 10 ms when there are many).
func (s *Server) closeSockets(ctx context.Context) {
	conns := s.presence.Conns()
	if len(conns) == 0 {
		return
	}
	const tick = 10 * time.Millisecond
	gap := s.cfg.DrainSpread / time.Duration(len(conns))
	per := 1
	if gap < tick {
		per = int(tick / max(gap, 1))
		gap = tick
	}
	t := time.NewTimer(gap)
	defer t.Stop()
	for i, c := range conns {
		if i > 0 && i%per == 0 {
			t.Reset(gap)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
		}
		c.Close(session.GoingAway, "going away")
	}
}

// shutdownRedis stops everything that uses Redis, then the clients.
func (s *Server) shutdownRedis() {
	s.stop()
	s.sio.Close()
	s.presence.Close()
	s.hub.Close()
	_ = s.subs.Close()
	s.bg.Wait()
	_ = s.rdb.Close()
	if s.api != nil {
		s.api.Close()
	}
}

// Draining reports whether the drain started.
func (s *Server) Draining() bool { return s.draining.Load() }
