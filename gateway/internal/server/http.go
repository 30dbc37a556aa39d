package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"orderpush/pkg/wire"
)

// routes builds the Echo instance. No Gzip anywhere: it breaks the
// WebSocket handshake (coder/websocket#335).
func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.httpError
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisableStackAll: true}))
	e.GET("/ws", s.handleWS)
	e.Match([]string{http.MethodGet, http.MethodOptions}, "/sse", s.handleSSE)
	e.Match([]string{http.MethodGet, http.MethodPost, http.MethodOptions}, "/socket.io/", echo.WrapHandler(s.sio))
	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/readyz", s.readyz)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{})))
	e.Match([]string{http.MethodGet, http.MethodHead}, "/*", echo.WrapHandler(s.web))
	return e
}

// readyz is 200 while Redis answers and the replica is not draining.
func (s *Server) readyz(c echo.Context) error {
	checks := map[string]string{"redis": "ok"}
	ready := true
	if s.draining.Load() {
		checks["draining"] = "true"
		ready = false
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), time.Second)
	defer cancel()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		checks["redis"] = err.Error()
		ready = false
	}
	if !ready {
		return c.JSON(http.StatusServiceUnavailable, map[string]any{"status": "unready", "checks": checks})
	}
	return c.JSON(http.StatusOK, map[string]any{"status": "ready", "checks": checks})
}

// apiError writes PROTOCOL.md's error shape with the code's status.
func apiError(c echo.Context, code, msg string) error {
	return c.JSON(wire.HTTPStatus(code), wire.NewErrorBody(code, msg))
}

// codeOf names the error code of an HTTP error Echo raised by itself.
// None of the gateway's routes answers a bare 400 (the socket endpoint
// checks its parameters and says invalid_since); should one come, its input
// can only be a query parameter or header, i.e. invalid_field.
func codeOf(status int) string {
	switch status {
	case http.StatusBadRequest:
		return wire.CodeInvalidField
	case http.StatusUnauthorized:
		return wire.CodeUnauthorized
	case http.StatusForbidden:
		return wire.CodeForbidden
	case http.StatusNotFound:
		return wire.CodeNotFound
	case http.StatusMethodNotAllowed:
		return wire.CodeMethodNotAllowed
	default:
		return wire.CodeInternal
	}
}

// httpError renders every Echo error in the same shape.
func (s *Server) httpError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, msg := http.StatusInternalServerError, "internal error"
	var he *echo.HTTPError
	if errors.As(err, &he) {
		status = he.Code
		if m, ok := he.Message.(string); ok {
			msg = m
		} else {
			msg = http.StatusText(status)
		}
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	// The status stays Echo's (e.g. 500 for a recovered panic, 413 should a
	// limit middleware raise it); the code is the contract's name for it.
	_ = c.JSON(status, wire.NewErrorBody(codeOf(status), msg))
}

// servePprof serves net/http/pprof on PPROF_ADDR (debugging only; keep it
// off public interfaces). It returns the function that stops it.
func (s *Server) servePprof() (func(), error) {
	l, err := net.Listen("tcp", s.cfg.PprofAddr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// ReadTimeout bounds reading a request's headers and body only:
	// net/http clears the deadline once the body is read, so a profile
	// that streams for ?seconds=N is not cut (no WriteTimeout, which would).
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       defaultReadTimeout,
		IdleTimeout:       idleTimeout,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	return func() {
		_ = srv.Close()
		<-done
	}, nil
}
