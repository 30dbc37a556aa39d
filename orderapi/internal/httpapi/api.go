// Package httpapi is the order API's HTTP layer on Echo: routes, the
// bearer-token middleware, strict JSON, one error handler producing
// {"error":{"code","message"}} (PROTOCOL.md "Order API"), request metrics,
// health endpoints and the OpenAPI document. Behaviour lives in package
// order; this package only translates.
package httpapi

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"orderpush/orderapi/internal/metrics"
	"orderpush/orderapi/internal/order"
	"orderpush/pkg/logging"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// MaxBody is the largest request body accepted; larger ones get 413.
const MaxBody = 64 << 10

// Config wires the HTTP layer.
type Config struct {
	Orders   *order.Service
	Verifier *token.Verifier
	Metrics  *metrics.Metrics
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
	// CORSOrigins are the origins browsers may call from ("*": any).
	CORSOrigins []string
	// Checks are the readiness checks by name ("database", "redis").
	Checks map[string]func(context.Context) error
	// Draining reports that the process is shutting down: readiness fails
	// and API requests get 503 unavailable.
	Draining func() bool
}

type api struct {
	cfg    Config
	log    *slog.Logger
	routes map[string]bool // registered path templates, the only route labels
	bufs   bufPool
}

// New returns the Echo instance serving the order API.
func New(cfg Config) *echo.Echo {
	a := &api{cfg: cfg, log: cfg.Logger, routes: map[string]bool{}}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = a.handleError
	e.Use(a.serve)
	e.Use(middleware.CORSWithConfig(middleware.CORSConfig{
		AllowOrigins:  cfg.CORSOrigins,
		AllowMethods:  []string{http.MethodGet, http.MethodPost, http.MethodOptions},
		AllowHeaders:  []string{echo.HeaderAuthorization, echo.HeaderContentType},
		ExposeHeaders: []string{echo.HeaderLocation, echo.HeaderXRequestID},
		MaxAge:        600,
	}))
	e.Use(a.gate)

	add := func(method, path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) {
		a.routes[path] = true
		e.Add(method, path, h, m...)
	}
	add(http.MethodPost, "/orders", a.createOrder, a.auth)
	add(http.MethodGet, "/orders/:orderNo", a.getOrder, a.auth)
	add(http.MethodPost, "/orders/:orderNo/process", a.processOrder, a.auth)
	add(http.MethodPost, "/orders/:orderNo/seen", a.seenOrder, a.auth)
	add(http.MethodPut, "/merchants/:id", a.registerMerchant, a.auth)
	add(http.MethodPost, "/merchants/:id/ack", a.ack, a.auth)
	add(http.MethodPost, "/receipts", a.receipts, a.auth)
	add(http.MethodGet, "/merchants/:id/orders", a.listOrders, a.auth)
	add(http.MethodGet, "/merchants/:id/summary", a.summary, a.auth)
	add(http.MethodGet, "/merchants/:id/events", a.events, a.auth)
	add(http.MethodPost, "/connections/:connId/notice", a.notice, a.auth)
	add(http.MethodGet, "/healthz", a.healthz)
	add(http.MethodGet, "/readyz", a.readyz)
	add(http.MethodGet, "/metrics", echo.WrapHandler(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})))
	add(http.MethodGet, "/openapi.json", a.openapi)
	return e
}

// serve is the outer layer of every request: it gives the answer its
// X-Request-Id, runs the rest under recover, hands an error to the error
// handler itself so the status it records is the one sent, then records
// the request's duration by route template, method and status and logs it
// at debug level.
func (a *api) serve(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		rid := c.Request().Header.Get(echo.HeaderXRequestID)
		if !validRequestID(rid) {
			rid = newRequestID()
		}
		c.Response().Header().Set(echo.HeaderXRequestID, rid)
		if err := a.recovered(c, next); err != nil {
			c.Error(err)
		}
		route := c.Path()
		if !a.routes[route] {
			route = "other"
		}
		method := c.Request().Method
		switch method {
		case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodOptions, http.MethodHead:
		default:
			method = "other"
		}
		status := c.Response().Status
		d := time.Since(start)
		a.cfg.Metrics.HTTPDuration.WithLabelValues(route, method, strconv.Itoa(status)).Observe(d.Seconds())
		if a.log.Enabled(c.Request().Context(), slog.LevelDebug) {
			a.log.LogAttrs(c.Request().Context(), slog.LevelDebug, "request",
				slog.String("method", method), slog.String("route", route), slog.Int("status", status),
				slog.Duration("took", d), slog.String("requestId", rid))
		}
		return nil
	}
}

// recovered runs next and turns a panic into an error after logging it with
// its goroutine's stack.
func (a *api) recovered(c echo.Context, next echo.HandlerFunc) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if r == http.ErrAbortHandler {
			panic(r) // net/http's way to abort the answer; it handles it
		}
		if err, _ = r.(error); err == nil {
			err = fmt.Errorf("%v", r)
		}
		stack := make([]byte, 4<<10)
		stack = stack[:runtime.Stack(stack, false)]
		a.log.Error("panic in handler", "route", c.Path(), logging.Err(err), "stack", string(stack))
	}()
	return next(c)
}

// gate runs after CORS, so its refusals carry the CORS headers: API
// requests get 503 while the process drains (health and metrics stay up so
// the balancer sees the readiness change), and bodies over MaxBody 413.
func (a *api) gate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if a.cfg.Draining != nil && a.cfg.Draining() {
			switch c.Path() {
			case "/healthz", "/readyz", "/metrics":
			default:
				return &order.Error{Code: wire.CodeUnavailable, Message: "shutting down, try another replica"}
			}
		}
		req := c.Request()
		if req.ContentLength > MaxBody {
			return bodyTooLarge()
		}
		// The server's own writer, so net/http knows to close the
		// connection rather than read the rest of an oversized body.
		req.Body = http.MaxBytesReader(c.Response().Writer, req.Body, MaxBody)
		return next(c)
	}
}

// validRequestID reports whether a caller's X-Request-Id may be kept: it
// goes into our answer and every log line of the request, so it is bounded
// and plain (1-128 of A-Z a-z 0-9 . _ : -); anything else is replaced.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := range len(id) {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// newRequestID is 32 random hex digits. It names a request in logs, so
// it needs to be unique, not unpredictable.
func newRequestID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

const callerKey = "orderapi.caller"

// auth verifies the bearer token (pinned algorithm, exp required, role and
// subject checked by pkg/token) and stores the caller for the handler.
// The token itself is never logged.
func (a *api) auth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		raw, msg := bearerToken(c.Request().Header.Get(echo.HeaderAuthorization))
		if msg != "" {
			return unauthorized(c, msg)
		}
		claims, err := a.cfg.Verifier.Verify(raw)
		if err != nil {
			return unauthorized(c, err.Error())
		}
		c.Set(callerKey, order.Caller{Role: claims.Role, Subject: claims.Subject})
		return next(c)
	}
}

// bearerToken reads an Authorization header: the token of "Bearer <token>"
// (scheme case-insensitive), or a message saying what is wrong.
func bearerToken(h string) (raw, problem string) {
	if h == "" {
		return "", "missing Authorization: Bearer <token>"
	}
	scheme, raw, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", "Authorization must be Bearer <token>"
	}
	return strings.TrimSpace(raw), ""
}

func unauthorized(c echo.Context, msg string) error {
	c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="orderapi"`)
	return &order.Error{Code: wire.CodeUnauthorized, Message: msg}
}

func caller(c echo.Context) order.Caller {
	cl, _ := c.Get(callerKey).(order.Caller)
	return cl
}
