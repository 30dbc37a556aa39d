// Package server assembles the order API process from its Config: the
// store (migrated at start), Redis, the outbox, the order service and the
// HTTP layer; Run serves until its context ends and then drains. Tests run
// whole servers in-process through it, exactly as main does.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"orderpush/orderapi/internal/attention"
	"orderpush/orderapi/internal/httpapi"
	"orderpush/orderapi/internal/metrics"
	"orderpush/orderapi/internal/order"
	"orderpush/orderapi/internal/outbox"
	"orderpush/orderapi/internal/ratelimit"
	"orderpush/orderapi/internal/store"
	"orderpush/pkg/logging"
	"orderpush/pkg/presence"
	"orderpush/pkg/rediskey"
	"orderpush/pkg/redismetrics"
	"orderpush/pkg/stream/publish"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// Deps are what a caller may inject. Zero values mean: build from Config.
type Deps struct {
	Logger *slog.Logger
	// Registry receives the metrics (main adds the Go and process
	// collectors to it). Nil: a private registry.
	Registry *prometheus.Registry
	// Redis replaces the client built from Config.Redis; the server
	// closes it.
	Redis redis.UniversalClient
	// Store tunes the store (clock, failure injection in tests).
	Store store.Options
}

// Server is one order API process.
type Server struct {
	cfg      Config
	log      *slog.Logger
	store    *store.Store
	rdb      redis.UniversalClient
	outbox   *outbox.Outbox
	alerts   *attention.Scheduler // nil: the attention webhook is off
	http     *http.Server
	ln       net.Listener
	pprofLn  net.Listener // nil unless PPROF_ADDR
	draining atomic.Bool
}

// New builds the server and binds its listener; nothing is served until
// Run. It waits up to cfg.DBConnectTimeout for the database.
func New(ctx context.Context, cfg Config, d Deps) (*Server, error) {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Registry == nil {
		d.Registry = prometheus.NewRegistry()
	}
	verifier, err := token.NewVerifier(cfg.JWT)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: d.Logger}
	d.Store.Logger = d.Logger
	if cfg.Attention.On() {
		d.Store.Alerts = cfg.Attention.Schedule()
	}
	if s.store, err = openStore(ctx, cfg, d.Store, d.Logger); err != nil {
		return nil, err
	}
	s.rdb = d.Redis
	if s.rdb == nil {
		s.rdb = cfg.Redis.NewRedis("orderapi")
	}
	m := metrics.New(d.Registry)
	metrics.RegisterBacklog(d.Registry, s.store.Backlog)
	redismetrics.Instrument(s.rdb, d.Registry, "orderapi")
	streams := publish.New(s.rdb, publish.Options{HistorySize: cfg.HistorySize, HistoryTTL: cfg.HistoryTTL})
	s.outbox = outbox.New(outbox.Config{
		RelayInterval: cfg.RelayInterval, Grace: cfg.RelayGrace, Retention: cfg.EventRetention,
	}, s.store, streams, m, d.Logger.With("component", "outbox"))
	s.store.OnCommit(s.outbox.PublishCommitted)
	limiter := ratelimit.New(s.rdb, ratelimit.Config{
		Rate: cfg.OrderRate, Key: rediskey.OrderRate, Limited: m.OrdersRateLimited, FailOpen: m.RateLimitFailOpen,
		Logger: d.Logger.With("component", "ratelimit"),
	})
	pres := presence.New(s.rdb, 0)
	var placed func(wire.Order)
	if cfg.Attention.On() {
		s.alerts, err = attention.New(cfg.Attention, attention.Deps{
			Store: s.store, Presence: pres, Metrics: attention.NewMetrics(d.Registry),
			Logger: d.Logger.With("component", "attention"),
		})
		if err != nil {
			s.closeDeps()
			return nil, err
		}
		placed = s.alerts.Placed
	}
	orders := order.New(order.Deps{
		Store: s.store, Presence: pres, Streams: streams,
		Metrics: m, Logger: d.Logger, OrderRate: limiter, RegisteredOnly: cfg.Merchants == MerchantsRegistered,
		Placed: placed, AlertsOn: cfg.Attention.On(),
	})
	e := httpapi.New(httpapi.Config{
		Orders: orders, Verifier: verifier, Metrics: m, Gatherer: d.Registry, Logger: d.Logger,
		CORSOrigins: cfg.CORSOrigins,
		Checks: map[string]func(context.Context) error{
			"database": s.store.Ping,
			"redis":    func(ctx context.Context) error { return s.rdb.Ping(ctx).Err() },
		},
		Draining: s.draining.Load,
	})
	s.http = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(d.Logger.Handler(), slog.LevelWarn),
	}
	if s.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
		s.closeDeps()
		return nil, fmt.Errorf("ORDERAPI_ADDR: listen %s: %w", cfg.Addr, err)
	}
	if cfg.PprofAddr != "" {
		if s.pprofLn, err = net.Listen("tcp", cfg.PprofAddr); err != nil {
			s.ln.Close()
			s.closeDeps()
			return nil, fmt.Errorf("PPROF_ADDR: listen %s: %w", cfg.PprofAddr, err)
		}
	}
	return s, nil
}

// openStore retries until the database answers or the timeout passes, so
// the service can start beside its database (compose, Kubernetes).
func openStore(ctx context.Context, cfg Config, opt store.Options, log *slog.Logger) (*store.Store, error) {
	deadline := time.Now().Add(cfg.DBConnectTimeout)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := store.Open(actx, cfg.DatabaseURL, opt)
		cancel()
		if err == nil {
			return st, nil
		}
		if time.Now().Add(wait).After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("DATABASE_URL: %w", err)
		}
		log.Warn("database not ready, retrying", logging.Err(err), "in", wait)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("DATABASE_URL: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
}

// PprofAddr is the address of the pprof listener, "" when off.
func (s *Server) PprofAddr() string {
	if s.pprofLn == nil {
		return ""
	}
	return s.pprofLn.Addr().String()
}

// servePprof serves net/http/pprof on l (PPROF_ADDR, debugging only) and
// returns the function that stops it. The timeouts let a profile of up to
// a minute run while a silent or slow client cannot hold a connection.
func servePprof(l net.Listener) func() {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		IdleTimeout:       time.Minute,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	return func() {
		_ = srv.Close()
		<-done
	}
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Run serves HTTP and runs the outbox until ctx ends, then drains: readiness
// turns 503 and new API requests get 503 for DrainDelay, then the listener
// closes, requests in flight finish (within ShutdownTimeout), the outbox
// records what it published, and every connection is closed. It returns nil
// after a clean drain.
func (s *Server) Run(ctx context.Context) error {
	obCtx, stopOutbox := context.WithCancel(context.WithoutCancel(ctx))
	obDone := make(chan struct{})
	go func() {
		defer close(obDone)
		_ = s.outbox.Run(obCtx)
	}()
	if s.pprofLn != nil {
		defer servePprof(s.pprofLn)()
	}
	alertsCtx, stopAlerts := context.WithCancel(context.WithoutCancel(ctx))
	alertsDone := make(chan struct{})
	go func() {
		defer close(alertsDone)
		if s.alerts != nil {
			_ = s.alerts.Run(alertsCtx)
		}
	}()
	served := make(chan error, 1)
	go func() { served <- s.http.Serve(s.ln) }()
	s.log.Info("orderapi listening", logging.KeyAddr, s.Addr(), "database", string(s.store.Dialect()))

	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
		err = fmt.Errorf("serve: %w", err)
	}
	s.draining.Store(true)
	s.log.Info("draining")
	if err == nil && s.cfg.DrainDelay > 0 {
		time.Sleep(s.cfg.DrainDelay) // serving 503s meanwhile; bounded, configured
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout())
	defer cancel()
	if serr := s.http.Shutdown(sctx); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("shutdown: %w", serr))
	}
	stopOutbox()
	stopAlerts()
	<-obDone
	<-alertsDone
	s.closeDeps()
	s.log.Info("stopped")
	return err
}

func (s *Server) shutdownTimeout() time.Duration {
	if s.cfg.ShutdownTimeout > 0 {
		return s.cfg.ShutdownTimeout
	}
	return 8 * time.Second
}

func (s *Server) closeDeps() {
	if err := s.store.Close(); err != nil {
		s.log.Warn("close database", logging.Err(err))
	}
	if err := s.rdb.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		s.log.Warn("close redis", logging.Err(err))
	}
}
