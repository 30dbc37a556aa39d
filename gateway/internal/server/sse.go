package server

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/transport/sse"
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
	st := sse.New(c.Response(), ad.sess, sse.Config{Heartbeat: s.cfg.SSEHeartbeat})
	s.opened(ad)
	defer s.closed(ad)
	// The handler's goroutine waits for the end of the stream: net/http
	// needs it while the response is written.
	st.Run(r.Context(), s.base, ad.sub.Replay)
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
