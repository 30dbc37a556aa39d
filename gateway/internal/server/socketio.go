package server

import (
	"context"
	"net/http"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/session"
	"orderpush/gateway/internal/sidroute"
	"orderpush/gateway/internal/transport/engineio"
	"orderpush/gateway/internal/transport/socketio"
	"orderpush/pkg/wire"
)

// newSocketIO builds socket.io at /socket.io/ (PROTOCOL.md "Other
// transports"). A client's CONNECT goes through admitSession like /ws and
// /sse, and the client is a session.Session from then on (limits,
// receipts, notices, presence, drain).
func (s *Server) newSocketIO() *socketio.Server {
	return socketio.New(socketio.Config{
		Engine: engineio.Config{
			PingInterval: s.cfg.PingInterval,
			// PING_TIMEOUT; 0 (off) leaves Engine.IO's default, as the
			// protocol needs one.
			PingTimeout: s.cfg.PingTimeout,
			MaxPayload:  wire.MaxFrameSize,
			// The sid names this replica, so a poll that the balancer sends
			// to another one can be forwarded here (sidroute).
			NewID:       func() string { return sidroute.SID(engineio.RandomID(), s.cfg.NodeID) },
			CheckOrigin: func(o string) bool { return originAllowed(s.cfg.AllowedOrigins, o) },
			Foreign:     s.route.Forward,
		},
		// CONNECT_RATE and MAX_CONNS at the Engine.IO handshake, the
		// "connect" of a socket.io client; the place is held for the
		// Engine.IO session's life, and the CONNECT's admission does not
		// take a second one.
		Admit: func(r *http.Request) (func(), *socketio.Refusal) {
			slot, ref := s.admit.Connect(r)
			if ref != nil {
				return nil, &socketio.Refusal{Code: ref.Code, Message: ref.Message}
			}
			return slot.Release, nil
		},
	}, sioBackend{s})
}

// sioBackend admits socket.io clients.
type sioBackend struct{ s *Server }

func (b sioBackend) Admit(req socketio.AdmitRequest) (socketio.Joined, *socketio.Refusal) {
	ad, f := b.s.admitSession(req.Request, admissionRequest{
		Transport: metrics.TransportSocketIO, Token: req.Token, Since: req.Since, HasSince: req.HasSince, Limited: true,
	})
	if f != nil {
		return nil, &socketio.Refusal{Code: f.Code, Message: f.Message}
	}
	b.s.opened(ad)
	return sioJoined{b.s, ad}, nil
}

// sioJoined is an admitted socket.io client.
type sioJoined struct {
	s  *Server
	ad *admitted
}

func (j sioJoined) Session() *session.Session        { return j.ad.sess }
func (j sioJoined) Replay(ctx context.Context) error { return j.ad.sub.Replay(ctx) }
func (j sioJoined) Ended()                           { j.s.closed(j.ad) }
