package server

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"orderpush/gateway/internal/admission"
	"orderpush/gateway/internal/hub"
	"orderpush/gateway/internal/socket"
	"orderpush/pkg/logging"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// handleWS is GET /ws: checks before the upgrade (PROTOCOL.md "Merchant
// socket"), then the connect sequence of ARCHITECTURE.md "How an order
// travels" 6: presence, subscribe
// and state (hub.Join), hello, upgrade, replay, live.
func (s *Server) handleWS(c echo.Context) error {
	r := c.Request()
	if !s.enter() {
		s.m.Connects.WithLabelValues("draining").Inc()
		return apiError(c, wire.CodeUnavailable, "this replica is shutting down; reconnect with since")
	}
	defer s.handlers.Done()
	slot, refused := s.admit.Connect(r) // CONNECT_RATE, MAX_CONNS: before any work
	if refused != nil {
		refused.Write(c.Response())
		return nil
	}
	kept := false // the socket took the slot over
	defer func() {
		if !kept {
			slot.Release()
		}
	}()
	if !originAllowed(s.cfg.AllowedOrigins, r.Header.Get("Origin")) {
		s.m.Connects.WithLabelValues("origin").Inc()
		return apiError(c, wire.CodeOriginNotAllowed, "origin not allowed")
	}
	// A copy: the token is kept for the socket's life (process forwarding)
	// and would otherwise pin the whole request line.
	raw := strings.Clone(bearer(r))
	claims, err := s.verifier.Verify(raw)
	if err != nil {
		s.m.Connects.WithLabelValues("unauthorized").Inc()
		return apiError(c, wire.CodeUnauthorized, err.Error())
	}
	if claims.Role != token.RoleMerchant {
		s.m.Connects.WithLabelValues("forbidden").Inc()
		return apiError(c, wire.CodeForbidden, "only a merchant token opens a socket")
	}
	since, err := parseSince(r)
	if err != nil {
		s.m.Connects.WithLabelValues("bad_since").Inc()
		return apiError(c, wire.CodeInvalidSince, err.Error())
	}
	mid := claims.Subject
	var exp time.Time
	if claims.ExpiresAt != nil {
		exp = claims.ExpiresAt.Time
	}
	sock := socket.New(newConnID(), mid, raw, socket.Config{
		QueueSize:    s.cfg.SendQueueSize,
		Batch:        r.URL.Query().Get("batch") == "1",
		PingInterval: s.cfg.PingInterval,
		Expiry:       exp,
	}, s.processor(), s.log, s.m)

	jctx, cancel := context.WithTimeout(s.base, joinTimeout)
	defer cancel()
	if refused := s.admit.Merchant(jctx, sock.ID(), mid); refused != nil { // MAX_CONNS_PER_MERCHANT
		refused.Write(c.Response())
		return nil
	}
	s.presenceAdd(jctx, sock.ID(), mid)
	sub, err := s.hub.Join(jctx, mid, sock, since)
	if err != nil {
		s.presenceRemove(sock.ID(), mid)
		s.m.Connects.WithLabelValues("unavailable").Inc()
		s.log.LogAttrs(jctx, slog.LevelWarn, "connect failed", slog.String(logging.KeyMerchant, mid), logging.Err(err))
		return apiError(c, wire.CodeUnavailable, "cannot reach the event stream; retry shortly")
	}
	s.track(sock)
	// Origins were checked above against ALLOWED_ORIGINS; the library's own
	// same-host check would refuse every cross-origin dashboard.
	conn, err := sock.Accept(c.Response(), r, &websocket.AcceptOptions{
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		s.m.Connects.WithLabelValues("upgrade_failed").Inc()
		s.leave(sock, sub)
		return nil // Accept wrote the response
	}
	s.m.Connects.WithLabelValues("ok").Inc()
	s.m.ConnectionsOpen.Inc()
	s.log.LogAttrs(s.base, slog.LevelDebug, "socket open", slog.String(logging.KeyConn, sock.ID()),
		slog.String(logging.KeyMerchant, mid), slog.Uint64(logging.KeySeq, sub.Hello().Seq))
	// The socket lives on a goroutine of its own: this one's stack grew
	// deep in the connect sequence (Echo, Redis) and would be kept at that
	// size for the socket's life, and returning lets net/http and Echo
	// release the request. The handler count passes to the new goroutine.
	s.handlers.Add(1)
	kept = true
	go s.serveSocket(sock, sub, conn, slot)
	return nil
}

// serveSocket runs an upgraded socket until it ends, then forgets it.
func (s *Server) serveSocket(sock *socket.Socket, sub *hub.Subscription, conn *websocket.Conn, slot *admission.Slot) {
	defer s.handlers.Done()
	defer slot.Release()
	defer s.m.ConnectionsOpen.Dec()
	defer s.leave(sock, sub)
	sock.Run(s.base, conn, sub.Replay)
	s.log.LogAttrs(s.base, slog.LevelDebug, "socket closed", slog.String(logging.KeyConn, sock.ID()),
		slog.Int("code", int(sock.CloseCode())))
}

// leave undoes the connect sequence's registrations.
func (s *Server) leave(sock *socket.Socket, sub *hub.Subscription) {
	sub.Leave()
	s.untrack(sock)
	s.presenceRemove(sock.ID(), sock.Merchant())
}

// enter admits a socket handler unless the server drains.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return false
	}
	s.handlers.Add(1)
	return true
}

// processor is the order API client as a socket.Processor, or nil.
func (s *Server) processor() socket.Processor {
	if s.api == nil {
		return nil
	}
	return s.api
}

// bearer is the token from ?token= or Authorization: Bearer.
func bearer(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

var errSince = errors.New("since must be a non-negative integer (the last seq seen)")

// parseSince reads ?since=: absent is hub.NoSince, else a non-negative
// integer in decimal digits.
func parseSince(r *http.Request) (int64, error) {
	q := r.URL.Query()
	if !q.Has("since") {
		return hub.NoSince, nil
	}
	v := q.Get("since")
	if v == "" || len(v) > 19 || strings.TrimLeft(v, "0123456789") != "" {
		return 0, errSince
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, errSince
	}
	return n, nil
}

var connIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newConnID is 16 random bytes in lower-case base32: unique, unguessable,
// safe in Redis keys and URLs.
func newConnID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "c" + strings.ToLower(connIDEncoding.EncodeToString(b[:]))
}
