package order

import (
	"context"
	"encoding/json"
	"time"

	"orderpush/pkg/rediskey"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// validConnID accepts what a gateway may use as connection id: 1-128
// visible ASCII characters other than "/".
func validConnID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' || s[i] == '/' {
			return false
		}
	}
	return true
}

// Notice sends a notice frame to one open connection: it finds the replica
// holding connID in presence and publishes on that replica's channel. A
// connection that is unknown, on a dead replica, or on a replica that is
// not listening is not_found.
func (s *Service) Notice(ctx context.Context, c Caller, connID string, body []byte) error {
	if c.Role != token.RoleService {
		return forbidden("only a service token may send notices")
	}
	if !validConnID(connID) {
		return invalidField("connId", "must be 1-128 visible ASCII characters")
	}
	req, err := ParseNotice(body)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	conn, ok, err := s.d.Presence.Locate(ctx, connID)
	if err != nil {
		return unavailable("redis", err)
	}
	if !ok {
		return notFound("connection %s is not open on a live replica", connID)
	}
	frame, err := wire.Encode(wire.EventNotice, 0, time.Now().UnixMilli(), wire.NoticeData{Msg: req.Msg})
	if err != nil {
		return unavailable("encoder", err)
	}
	payload, err := json.Marshal(wire.Notice{ConnID: connID, Frame: frame})
	if err != nil {
		return unavailable("encoder", err)
	}
	n, err := s.d.Streams.PublishRaw(ctx, rediskey.NodeChannel(conn.Node), payload)
	if err != nil {
		return unavailable("redis", err)
	}
	if n == 0 {
		return notFound("connection %s: its replica is not listening", connID)
	}
	s.d.Metrics.NoticesSent.Inc()
	return nil
}
