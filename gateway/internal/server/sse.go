package server

import (
	"github.com/labstack/echo/v4"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/transport/sse"
)

// handleSSE is GET /sse (PROTOCOL.md "Other transports"): the shared
// admission (the same refusals as /ws, as HTTP errors before the stream
// starts), then an event stream. Last-Event-ID (what EventSource sends when
// it reconnects) or ?since= resumes.
func (s *Server) handleSSE(c echo.Context) error {
	r := c.Request()
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
