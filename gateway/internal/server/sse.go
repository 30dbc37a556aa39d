package server

import (
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/transport/sse"
	"orderpush/pkg/logging"
	"orderpush/pkg/wire"
)

// handleSSE is GET /sse (PROTOCOL.md "Other transports"): the shared
// admission (the same refusals as /ws, as HTTP errors before the stream
// starts), then an event stream. Last-Event-ID (what EventSource sends when
// it reconnects) or ?since= resumes.
func (s *Server) handleSSE(c echo.Context) error {
	r := c.Request()
	allowed := s.sseCORS(c)
	if r.Method == http.MethodOptions {
		if !allowed {
			return apiError(c, wire.CodeOriginNotAllowed, "origin not allowed")
		}
		return c.NoContent(http.StatusNoContent)
	}
	since, hasSince := r.Header.Get("Last-Event-ID"), r.Header.Get("Last-Event-ID") != ""
	if !hasSince {
		since, hasSince = querySince(r)
	}
	ad, f := s.admitSession(r, admissionRequest{Transport: metrics.TransportSSE, Since: since, HasSince: hasSince})
	if f != nil {
		return f.write(c)
	}
	// The stream takes the connection over and lives on a goroutine of its
	// own, like a WebSocket: this one's stack grew deep in the connect
	// sequence, and net/http's buffers go with it. The admission's handler
	// count passes to the stream.
	st, err := sse.Take(c.Response(), ad.sess, sse.Config{Heartbeat: s.cfg.SSEHeartbeat})
	if err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "sse: no stream", logging.Err(err))
		s.rejected(ad)
		return nil
	}
	s.opened(ad)
	st.Start(s.base, ad.sub.Replay, func() { s.closed(ad) })
	return nil
}

// sseCORS lets a page on another origin read the stream (EventSource from
// a dashboard served elsewhere): an Origin that ALLOWED_ORIGINS accepts (any,
// when unset) is echoed in Access-Control-Allow-Origin, on the stream, on
// refusals (so a fetch-based client can read the error) and on the preflight
// a client sending Authorization or Last-Event-ID itself triggers. No
// credentials: the token travels in the URL or the Authorization header,
// never in a cookie. It reports false for an Origin that is not allowed
// (admission refuses the GET itself).
func (s *Server) sseCORS(c echo.Context) bool {
	h := c.Response().Header()
	h.Add("Vary", "Origin")
	origin := c.Request().Header.Get("Origin")
	if origin == "" {
		return true
	}
	if !originAllowed(s.cfg.AllowedOrigins, origin) {
		return false
	}
	h.Set("Access-Control-Allow-Origin", origin)
	if c.Request().Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET")
		h.Set("Access-Control-Allow-Headers", "Authorization, Last-Event-ID")
		h.Set("Access-Control-Max-Age", "600")
	}
	return true
}
