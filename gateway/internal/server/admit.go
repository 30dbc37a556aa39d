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

	"github.com/labstack/echo/v4"

	"orderpush/gateway/internal/admission"
	"orderpush/gateway/internal/hub"
	"orderpush/gateway/internal/session"
	"orderpush/pkg/logging"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// admissionRequest is what a transport brings to the shared pre-upgrade
// path.
type admissionRequest struct {
	Transport string // metrics label (metrics.TransportWS, ...)
	// Token is the raw bearer token; empty: ?token= or Authorization:
	// Bearer of the request.
	Token string
	// Since is the client's resume point as sent (?since=, Last-Event-ID,
	// ...); HasSince tells whether one was sent at all.
	Since    string
	HasSince bool
	// Limited: the connect limits (CONNECT_RATE, MAX_CONNS) were applied
	// before, and the place is held elsewhere (socket.io's Engine.IO
	// handshake, whose session may CONNECT more than once).
	Limited bool
}

// admitted is a session that passed admission: it is in presence and the
// hub, its hello is queued, and it holds one of the server's handler counts
// (so the drain waits for it). The transport upgrades and then calls
// Server.opened and, when the connection is over, Server.closed; or, when
// the upgrade fails, Server.rejected.
type admitted struct {
	sess *session.Session
	sub  *hub.Subscription
	slot *admission.Slot // the place among MAX_CONNS, released when the connection ends
}

// refusal is an HTTP error answered before the upgrade (PROTOCOL.md
// "Merchant socket", "Limits and hostile clients").
type refusal struct {
	Code       string // pkg/wire's code; the HTTP status follows from it
	Message    string
	RetryAfter int // seconds; 0: no Retry-After header
}

// write answers the refusal.
func (f *refusal) write(c echo.Context) error {
	if f.RetryAfter > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
		c.Response().Header().Set("Cache-Control", "no-store")
	}
	return apiError(c, f.Code, f.Message)
}

// limited converts a connect-limit refusal (package admission).
func limited(r *admission.Refusal) *refusal {
	return &refusal{Code: r.Code, Message: r.Message, RetryAfter: r.RetryAfterSeconds()}
}

// admitSession is the one pre-upgrade path of every transport: drain,
// connect limits (CONNECT_RATE, MAX_CONNS), origin, token, role, since,
// MAX_CONNS_PER_MERCHANT, then the connect sequence of ARCHITECTURE.md "How an order travels" 6 (presence,
// subscribe and state: hub.Join), which queues hello. It returns the
// admitted session, or the refusal to answer (counted by result).
func (s *Server) admitSession(r *http.Request, a admissionRequest) (*admitted, *refusal) {
	if !s.enter() {
		s.m.Connects.WithLabelValues("draining").Inc()
		return nil, &refusal{Code: wire.CodeUnavailable, Message: "this replica is shutting down; reconnect with since"}
	}
	var slot *admission.Slot
	if !a.Limited {
		var refused *admission.Refusal
		slot, refused = s.admit.Connect(r) // CONNECT_RATE, MAX_CONNS: before any work
		if refused != nil {
			s.handlers.Done()
			return nil, limited(refused)
		}
	}
	ad, f := s.admitEntered(r, a)
	if f != nil {
		slot.Release()
		s.handlers.Done()
		return nil, f
	}
	ad.slot = slot
	return ad, nil
}

func (s *Server) admitEntered(r *http.Request, a admissionRequest) (*admitted, *refusal) {
	if !originAllowed(s.cfg.AllowedOrigins, r.Header.Get("Origin")) {
		s.m.Connects.WithLabelValues("origin").Inc()
		return nil, &refusal{Code: wire.CodeOriginNotAllowed, Message: "origin not allowed"}
	}
	raw := a.Token
	if raw == "" {
		raw = bearer(r)
	}
	// A copy: the token is kept for the session's life (process
	// forwarding) and would otherwise pin the whole request line.
	raw = strings.Clone(raw)
	claims, err := s.verifier.Verify(raw)
	if err != nil {
		s.m.Connects.WithLabelValues("unauthorized").Inc()
		return nil, &refusal{Code: wire.CodeUnauthorized, Message: err.Error()}
	}
	if claims.Role != token.RoleMerchant {
		s.m.Connects.WithLabelValues("forbidden").Inc()
		return nil, &refusal{Code: wire.CodeForbidden, Message: "only a merchant token opens a socket"}
	}
	since := int64(hub.NoSince)
	if a.HasSince {
		if since, err = parseSince(a.Since); err != nil {
			s.m.Connects.WithLabelValues("bad_since").Inc()
			return nil, &refusal{Code: wire.CodeInvalidSince, Message: err.Error()}
		}
	}
	mid := claims.Subject
	var exp time.Time
	if claims.ExpiresAt != nil {
		exp = claims.ExpiresAt.Time
	}
	sess := session.New(session.Identity{
		ID: newConnID(), Merchant: mid, Bearer: raw, Expiry: exp, Transport: a.Transport,
	}, session.Config{
		QueueSize: s.cfg.SendQueueSize,
		MsgRate:   s.cfg.ClientMsgRate,
	}, session.Deps{Processor: s.processor(), Receipts: s.receipts, Log: s.log, Metrics: s.m})

	jctx, cancel := context.WithTimeout(s.base, joinTimeout)
	defer cancel()
	if refused := s.admit.Merchant(jctx, sess.ID(), mid); refused != nil { // MAX_CONNS_PER_MERCHANT
		return nil, limited(refused)
	}
	s.presence.Add(jctx, sess)
	sub, err := s.hub.Join(jctx, mid, sess, since)
	if err != nil {
		s.presence.Remove(sess)
		s.m.Connects.WithLabelValues("unavailable").Inc()
		s.log.LogAttrs(jctx, slog.LevelWarn, "connect failed", slog.String(logging.KeyMerchant, mid), logging.Err(err))
		return nil, &refusal{Code: wire.CodeUnavailable, Message: "cannot reach the event stream; retry shortly"}
	}
	s.open(sess)
	return &admitted{sess: sess, sub: sub}, nil
}

// opened counts an admitted session whose transport is up.
func (s *Server) opened(ad *admitted) {
	s.m.Connects.WithLabelValues("ok").Inc()
	s.m.ConnectionsOpen.WithLabelValues(ad.sess.Transport()).Inc()
	s.log.LogAttrs(s.base, slog.LevelDebug, "connection open", slog.String(logging.KeyConn, ad.sess.ID()),
		slog.String(logging.KeyMerchant, ad.sess.Merchant()), slog.String("transport", ad.sess.Transport()),
		slog.Uint64(logging.KeySeq, ad.sub.Hello().Seq))
}

// closed undoes an opened session's registrations once its transport is
// over (the session has ended).
func (s *Server) closed(ad *admitted) {
	defer s.handlers.Done()
	defer ad.slot.Release()
	s.leave(ad)
	// After leave: a reader of the gauge at zero finds nothing of the
	// connection left (tests and benchmarks wait on it).
	s.m.ConnectionsOpen.WithLabelValues(ad.sess.Transport()).Dec()
	r, _ := ad.sess.Closing()
	s.log.LogAttrs(s.base, slog.LevelDebug, "connection closed", slog.String(logging.KeyConn, ad.sess.ID()),
		slog.String("reason", r.String()))
}

// rejected undoes an admission whose upgrade failed (the transport has
// answered the request).
func (s *Server) rejected(ad *admitted) {
	defer s.handlers.Done()
	defer ad.slot.Release()
	s.m.Connects.WithLabelValues("upgrade_failed").Inc()
	ad.sess.End()
	s.leave(ad)
}

// leave undoes the connect sequence's registrations.
func (s *Server) leave(ad *admitted) {
	ad.sub.Leave()
	s.presence.Remove(ad.sess)
}

// open makes a session whose hello is queued reachable for notices and
// the drain. One that opens after the drain took its list is closed here:
// draining is set before the list is taken and read after the session is
// listed, so every session is closed by one or the other.
func (s *Server) open(sess *session.Session) {
	s.presence.Open(sess)
	if s.draining.Load() {
		sess.Close(session.GoingAway, "going away")
	}
}

// enter admits a connection handler unless the server drains.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return false
	}
	s.handlers.Add(1)
	return true
}

// processor is the order API client as a session.Processor, or nil.
func (s *Server) processor() session.Processor {
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

// querySince is ?since= of r, and whether it was given.
func querySince(r *http.Request) (string, bool) {
	q := r.URL.Query()
	return q.Get("since"), q.Has("since")
}

var errSince = errors.New("since must be a non-negative integer (the last seq seen)")

// parseSince reads a resume point: a non-negative integer in decimal
// digits.
func parseSince(v string) (int64, error) {
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
