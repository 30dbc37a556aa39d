package httpapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"orderpush/orderapi/internal/order"
	"orderpush/orderapi/internal/ratelimit"
	"orderpush/pkg/logging"
	"orderpush/pkg/wire"
)

// handleError is Echo's HTTPErrorHandler: every failure leaves as
// {"error":{"code","message"}}.
func (a *api) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	e := toError(err)
	status := wire.HTTPStatus(e.Code)
	switch {
	case status >= 500 && e.Code != wire.CodeUnavailable:
		a.log.Error("request failed", "route", c.Path(), logging.Err(err))
	case e.Code == wire.CodeUnavailable && e.Err != nil:
		a.log.Warn("dependency unavailable", "route", c.Path(), logging.Err(e.Err))
	}
	if e.RetryAfter > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(ratelimit.RetryAfter(e.RetryAfter)))
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	_ = a.writeJSON(c, status, wire.NewErrorBody(e.Code, e.Message))
}

// toError turns any handler error into an *order.Error.
func toError(err error) *order.Error {
	if e, ok := order.AsError(err); ok {
		return e
	}
	var he *echo.HTTPError
	if !errors.As(err, &he) {
		return &order.Error{Code: wire.CodeInternal, Message: "internal error", Err: err}
	}
	switch he.Code {
	case http.StatusNotFound:
		return &order.Error{Code: wire.CodeNotFound, Message: "no such route"}
	case http.StatusMethodNotAllowed:
		return &order.Error{Code: wire.CodeMethodNotAllowed, Message: "method not allowed on this route"}
	case http.StatusUnauthorized:
		return &order.Error{Code: wire.CodeUnauthorized, Message: "unauthorized"}
	case http.StatusForbidden:
		return &order.Error{Code: wire.CodeForbidden, Message: "forbidden"}
	case http.StatusServiceUnavailable:
		return &order.Error{Code: wire.CodeUnavailable, Message: "unavailable"}
	}
	if he.Code >= 400 && he.Code < 500 {
		return &order.Error{Code: wire.CodeInvalidJSON, Message: http.StatusText(he.Code)}
	}
	return &order.Error{Code: wire.CodeInternal, Message: "internal error", Err: err}
}
