package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"orderpush/gateway/internal/hub"
	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/orderapi"
	"orderpush/gateway/internal/sidroute"
	"orderpush/gateway/internal/transport/engineio"
	"orderpush/gateway/internal/transport/socketio"
	"orderpush/pkg/logging"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// newSocketIO builds socket.io at /socket.io/ (PROTOCOL.md "Other
// transports") on this replica's connect sequence.
func (s *Server) newSocketIO() *socketio.Server {
	return socketio.New(socketio.Config{
		Engine: engineio.Config{
			PingInterval: s.cfg.PingInterval,
			// PING_TIMEOUT; 0 (off) leaves Engine.IO's default, as the
			// protocol needs one.
			PingTimeout: s.cfg.PingTimeout,
			MaxPayload:  wire.MaxFrameSize,
			QueueSize:   s.cfg.SendQueueSize,
			// The sid names this replica, so a poll that the balancer sends
			// to another one can be forwarded here (sidroute).
			NewID:       func() string { return sidroute.SID(engineio.RandomID(), s.cfg.NodeID) },
			CheckOrigin: func(o string) bool { return originAllowed(s.cfg.AllowedOrigins, o) },
			Sent:        s.sioSent,
			Foreign:     s.forwardPoll,
		},
		JoinTimeout: joinTimeout,
		// CONNECT_RATE and MAX_CONNS at the Engine.IO handshake, the
		// "connect" of a socket.io client; the place is held for the
		// session's life.
		Admit: func(r *http.Request) (func(), *socketio.Refusal) {
			slot, ref := s.admit.Connect(r)
			if ref != nil {
				return nil, &socketio.Refusal{Code: ref.Code, Message: ref.Message}
			}
			return slot.Release, nil
		},
		Connected: func(bool) {
			s.m.Connects.WithLabelValues("ok").Inc()
		},
		SlowConsumer: func() { s.m.SlowConsumerCloses.Inc() },
	}, sioBackend{s}, s.log)
}

// sioSent counts frames written to socket.io clients and observes the lag
// of live ones.
func (s *Server) sioSent(es []engineio.Entry) {
	now := time.Now().UnixMilli()
	n := 0
	for _, e := range es {
		if e.Raw && (len(e.Data) < 2 || e.Data[1] != byte(socketio.Event)) {
			continue // engine.io control packets, CONNECT answers, acks
		}
		n++
		if e.TS > 0 {
			s.m.DeliveryLag.Observe(float64(max(now-e.TS, 0)) / 1000)
		}
	}
	s.m.FramesSent.Add(float64(n))
}

// sioBackend is the gateway's connect sequence for socket.io clients.
type sioBackend struct{ s *Server }

func (b sioBackend) Join(ctx context.Context, req socketio.JoinRequest, c *socketio.Conn) (socketio.Joined, error) {
	s := b.s
	if !s.enter() {
		s.m.Connects.WithLabelValues("draining").Inc()
		return nil, &socketio.Refusal{Code: "unavailable", Message: "this replica is shutting down; reconnect"}
	}
	ok := false
	defer func() {
		if !ok {
			s.handlers.Done()
		}
	}()
	if !originAllowed(s.cfg.AllowedOrigins, req.Header.Get("Origin")) {
		s.m.Connects.WithLabelValues("origin").Inc()
		return nil, &socketio.Refusal{Code: "origin_not_allowed", Message: "origin not allowed"}
	}
	raw := strings.Clone(req.Token)
	claims, err := s.verifier.Verify(raw)
	if err != nil {
		s.m.Connects.WithLabelValues("unauthorized").Inc()
		return nil, &socketio.Refusal{Code: "unauthorized", Message: err.Error()}
	}
	if claims.Role != token.RoleMerchant {
		s.m.Connects.WithLabelValues("forbidden").Inc()
		return nil, &socketio.Refusal{Code: "forbidden", Message: "only a merchant token opens a socket"}
	}
	mid := claims.Subject
	if ref := s.admit.Merchant(ctx, c.ID(), mid); ref != nil { // MAX_CONNS_PER_MERCHANT
		return nil, &socketio.Refusal{Code: ref.Code, Message: ref.Message}
	}
	s.sioPresenceAdd(ctx, c.ID(), mid)
	sub, err := s.hub.Join(ctx, mid, c, req.Since)
	if err != nil {
		s.sioPresenceRemove(c.ID(), mid)
		s.m.Connects.WithLabelValues("unavailable").Inc()
		s.log.LogAttrs(ctx, slog.LevelWarn, "socket.io connect failed", slog.String(logging.KeyMerchant, mid), logging.Err(err))
		return nil, err
	}
	ok = true
	s.m.ConnectionsOpen.WithLabelValues(metrics.TransportSocketIO).Inc()
	j := &sioJoined{s: s, sub: sub, conn: c, merchant: mid, bearer: raw}
	if claims.ExpiresAt != nil {
		// Token expiry ends the session; the client's reconnect then gets
		// connect_error "unauthorized" until it brings a new token.
		j.expiry = time.AfterFunc(time.Until(claims.ExpiresAt.Time), func() { c.Close("token expired") })
	}
	return j, nil
}

// sioPresenceAdd records a socket.io connection in Redis presence, so it
// counts for the order API's online figure and MAX_CONNS_PER_MERCHANT. A
// failure is counted; unlike a session's entry it is not written again
// after Redis lost its data.
func (s *Server) sioPresenceAdd(ctx context.Context, conn, mid string) {
	if err := s.sioPresence.Add(ctx, conn, mid, s.cfg.NodeID); err != nil {
		s.m.PresenceErrors.Inc()
		s.log.LogAttrs(ctx, slog.LevelWarn, "presence add failed", slog.String(logging.KeyConn, conn), logging.Err(err))
	}
}

// sioPresenceRemove forgets a socket.io connection in Redis presence.
func (s *Server) sioPresenceRemove(conn, mid string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.sioPresence.Remove(ctx, conn, mid); err != nil {
		s.m.PresenceErrors.Inc()
	}
}

// sioJoined is an admitted socket.io client.
type sioJoined struct {
	s        *Server
	sub      *hub.Subscription
	conn     *socketio.Conn
	merchant string
	bearer   string // for process forwarding; never logged
	expiry   *time.Timer
	leave    sync.Once
}

func (j *sioJoined) Replay(ctx context.Context) error { return j.sub.Replay(ctx) }

func (j *sioJoined) Leave() {
	j.leave.Do(func() {
		if j.expiry != nil {
			j.expiry.Stop()
		}
		j.sub.Leave()
		j.s.sioPresenceRemove(j.conn.ID(), j.merchant)
		j.s.m.ConnectionsOpen.WithLabelValues(metrics.TransportSocketIO).Dec()
		j.s.handlers.Done()
	})
}

// Handle answers a client frame as a WebSocket's would be answered.
func (j *sioJoined) Handle(ctx context.Context, frame []byte) []byte {
	f, err := wire.ParseClient(frame)
	if err != nil {
		return wire.ErrorFrame("invalid_frame", err.Error())
	}
	switch f.Event {
	case wire.EventPing:
		return pongFrame
	case wire.EventProcess:
		return j.process(ctx, f.OrderNo)
	}
	return nil
}

var pongFrame = []byte(`{"event":"pong"}`)

func (j *sioJoined) process(ctx context.Context, orderNo string) []byte {
	s := j.s
	if s.api == nil {
		s.m.ProcessForwards.WithLabelValues("error").Inc()
		return wire.ErrorFrame("unavailable", "order processing is not configured on this gateway (ORDERAPI_URL)")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := s.api.Process(ctx, orderNo, j.bearer)
	var apiErr *orderapi.Error
	switch {
	case err == nil:
		s.m.ProcessForwards.WithLabelValues("ok").Inc()
		return nil
	case errors.As(err, &apiErr):
		s.m.ProcessForwards.WithLabelValues("rejected").Inc()
		return wire.ErrorFrame(apiErr.Code, apiErr.Message)
	default:
		s.m.ProcessForwards.WithLabelValues("error").Inc()
		s.log.LogAttrs(ctx, slog.LevelWarn, "process forward failed", slog.String(logging.KeyOrderNo, orderNo), logging.Err(err))
		return wire.ErrorFrame("unavailable", "the order api did not answer; try again")
	}
}

// closeSocketIO ends every socket.io session at drain, spread like the
// WebSockets: the clients reconnect to other replicas and recover.
func (s *Server) closeSocketIO(ctx context.Context) {
	s.sio.Engine().Stop()
	for _, sess := range s.sio.Engine().Sessions() {
		if ctx.Err() != nil {
			return
		}
		sess.Close("server shutting down")
	}
}

// forwardPoll is engineio's Foreign hook: a request for a session another
// live replica holds goes there (package sidroute).
func (s *Server) forwardPoll(w http.ResponseWriter, r *http.Request, sid string) bool {
	return s.route.Forward(w, r, sid)
}
