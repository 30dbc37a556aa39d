package httpapi

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"orderpush/orderapi/internal/order"
	"orderpush/pkg/wire"
)

// readBody reads the whole request body; one over MaxBody fails with 413.
func readBody(c echo.Context) ([]byte, error) {
	b, err := io.ReadAll(c.Request().Body)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, bodyTooLarge()
		}
		return nil, &order.Error{Code: wire.CodeInvalidJSON, Message: "could not read the request body"}
	}
	return b, nil
}

func bodyTooLarge() *order.Error {
	return &order.Error{Code: wire.CodePayloadTooLarge, Message: "request body is larger than 64 KiB"}
}

func (a *api) createOrder(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	o, err := a.cfg.Orders.Create(c.Request().Context(), caller(c), body)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/orders/"+o.OrderNo)
	return a.writeJSON(c, http.StatusCreated, o)
}

func (a *api) getOrder(c echo.Context) error {
	o, err := a.cfg.Orders.Get(c.Request().Context(), caller(c), c.Param("orderNo"))
	if err != nil {
		return err
	}
	alerts, err := a.cfg.Orders.Alerts(c.Request().Context(), o.OrderNo)
	if err != nil {
		return err
	}
	if alerts == nil {
		return a.writeJSON(c, http.StatusOK, o) // the webhook is off
	}
	return a.writeJSON(c, http.StatusOK, orderWithAlerts{o, alerts})
}

func (a *api) processOrder(c echo.Context) error {
	o, err := a.cfg.Orders.Process(c.Request().Context(), caller(c), c.Param("orderNo"))
	if err != nil {
		return err
	}
	return a.writeJSON(c, http.StatusOK, o)
}

// seenOrder answers 200 with the order; the first seen's order.seen went
// out before the answer.
func (a *api) seenOrder(c echo.Context) error {
	o, err := a.cfg.Orders.Seen(c.Request().Context(), caller(c), c.Param("orderNo"))
	if err != nil {
		return err
	}
	return a.writeJSON(c, http.StatusOK, o)
}

// ack answers 204: receipts are recorded, nothing to return.
func (a *api) ack(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	if err := a.cfg.Orders.Ack(c.Request().Context(), caller(c), c.Param("id"), body); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// receipts answers 200 with the applied and skipped counts per kind (the
// gateway counts them); the order.seen events went out before the answer.
func (a *api) receipts(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	res, err := a.cfg.Orders.Receipts(c.Request().Context(), caller(c), body)
	if err != nil {
		return err
	}
	return a.writeJSON(c, http.StatusOK, res)
}

// registerMerchant answers 201 for a new registration, 200 for an existing
// one, with {"merchantId","registeredAt"}.
func (a *api) registerMerchant(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	r, err := a.cfg.Orders.Register(c.Request().Context(), caller(c), c.Param("id"), bytes.TrimSpace(body))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if r.Created {
		status = http.StatusCreated
	}
	return a.writeJSON(c, status, r)
}

func (a *api) listOrders(c echo.Context) error {
	page, err := a.cfg.Orders.List(c.Request().Context(), caller(c), c.Param("id"), order.ListParams{
		Status: c.QueryParam("status"), Limit: c.QueryParam("limit"), Before: c.QueryParam("before"),
	})
	if err != nil {
		return err
	}
	return a.writeJSON(c, http.StatusOK, page)
}

func (a *api) summary(c echo.Context) error {
	s, err := a.cfg.Orders.Summary(c.Request().Context(), caller(c), c.Param("id"))
	if err != nil {
		return err
	}
	return a.writeJSON(c, http.StatusOK, s)
}

// events writes the stored frames verbatim: they are the bytes sockets got.
func (a *api) events(c echo.Context) error {
	frames, err := a.cfg.Orders.Events(c.Request().Context(), caller(c), c.Param("id"),
		c.QueryParam("after"), c.QueryParam("limit"))
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.WriteString(`{"events":[`)
	for i, f := range frames {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(f)
	}
	b.WriteString("]}\n")
	return writeBody(c, http.StatusOK, b.Bytes())
}

func (a *api) notice(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	if err := a.cfg.Orders.Notice(c.Request().Context(), caller(c), c.Param("connId"), body); err != nil {
		return err
	}
	return a.writeJSON(c, http.StatusAccepted, map[string]string{"status": "accepted"})
}

func (a *api) healthz(c echo.Context) error {
	return a.writeJSON(c, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz runs every check at once, each bounded to a second, and reports
// each result by name.
func (a *api) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), time.Second)
	defer cancel()
	checks := make(map[string]string, len(a.cfg.Checks)+1)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, check := range a.cfg.Checks {
		wg.Go(func() {
			res := "ok"
			if err := check(ctx); err != nil {
				res = err.Error()
			}
			mu.Lock()
			checks[name] = res
			mu.Unlock()
		})
	}
	wg.Wait()
	ready := true
	for _, r := range checks {
		ready = ready && r == "ok"
	}
	if a.cfg.Draining != nil && a.cfg.Draining() {
		checks["draining"] = "shutting down"
		ready = false
	}
	if !ready {
		return a.writeJSON(c, http.StatusServiceUnavailable, map[string]any{"status": "unready", "checks": checks})
	}
	return a.writeJSON(c, http.StatusOK, map[string]any{"status": "ready", "checks": checks})
}

// openapiDoc is the order API's OpenAPI 3.1 document, served at
// /openapi.json. It is a copy of deploy/openapi.json; a test keeps the two
// identical. Never modified.
//
//go:embed openapi.json
var openapiDoc []byte

func (a *api) openapi(c echo.Context) error {
	return writeBody(c, http.StatusOK, openapiDoc)
}
