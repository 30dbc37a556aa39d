package server

import (
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/transport/ws"
)

// handleWS is GET /ws (PROTOCOL.md "Merchant socket"): the shared
// admission, then the WebSocket upgrade, replay and live frames.
func (s *Server) handleWS(c echo.Context) error {
	r := c.Request()
	since, hasSince := querySince(r)
	ad, f := s.admitSession(r, admissionRequest{Transport: metrics.TransportWS, Since: since, HasSince: hasSince})
	if f != nil {
		return f.write(c)
	}
	// Origins were checked by admitSession against ALLOWED_ORIGINS; the library's
	// own same-host check would refuse every cross-origin dashboard.
	conn, err := ws.Accept(c.Response(), r, ad.sess, ws.Config{
		Batch:        r.URL.Query().Get("batch") == "1",
		PingInterval: s.cfg.PingInterval,
		PingTimeout:  pingTimeout(s.cfg.PingTimeout),
	}, &websocket.AcceptOptions{
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	}, s.log, s.m)
	if err != nil {
		s.rejected(ad)
		return nil // Accept wrote the response
	}
	s.opened(ad)
	// The connection lives on a goroutine of its own: this one's stack grew
	// deep in the connect sequence (Echo, Redis) and would be kept at that
	// size for the connection's life, and returning lets net/http and Echo
	// release the request. The admission's handler count passes to it.
	go func() {
		defer s.closed(ad)
		conn.Run(s.base, ad.sub.Replay)
	}()
	return nil
}

// pingTimeout maps PING_TIMEOUT to ws.Config (0 is off there when
// negative).
func pingTimeout(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
