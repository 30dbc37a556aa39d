package socketio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"orderpush/gateway/internal/hub"
	"orderpush/gateway/internal/session/sendq"
	"orderpush/gateway/internal/transport/engineio"
	"orderpush/pkg/logging"
	"orderpush/pkg/wire"
)

// Backend is the gateway's side of a socket.io client: the connect
// sequence and the client frames, shared with the other transports.
type Backend interface {
	// Join admits a client (token, role, limits, presence) and joins m to
	// its merchant's topic, queueing hello (and resync) on m. A refusal is
	// a *Refusal.
	Join(ctx context.Context, req JoinRequest, c *Conn) (Joined, error)
}

// JoinRequest is what a CONNECT asks for.
type JoinRequest struct {
	Token string
	Since int64 // hub.NoSince without a recovery offset
	// ClientIP and Origin come from the Engine.IO handshake request.
	RemoteAddr string
	Header     http.Header
}

// Joined is an admitted client.
type Joined interface {
	// Replay sends what the client missed since JoinRequest.Since.
	Replay(ctx context.Context) error
	// Handle acts on one client frame (PROTOCOL.md "Merchant socket") and
	// returns the frame to answer with (pong, error) or nil.
	Handle(ctx context.Context, frame []byte) []byte
	// Leave undoes Join.
	Leave()
}

// Refusal is a connect refused with an HTTP error's code.
type Refusal struct {
	Code    string // wire.Code..., e.g. "unauthorized"
	Message string
}

func (r *Refusal) Error() string { return r.Code + ": " + r.Message }

type state uint8

const (
	idle       state = iota // no CONNECT yet, or the last one was refused
	connecting              // Join and replay under way
	connected
	closed
)

// Conn is one socket.io client on one Engine.IO session; it is the hub's
// member for the client's merchant.
type Conn struct {
	srv       *Server
	sess      *engineio.Session
	id        string      // connId: the socket id and hello.connId
	qtoken    string      // ?token= of the handshake; never logged
	remote    string      // handshake RemoteAddr
	header    http.Header // handshake headers (Origin, X-Forwarded-For)
	connTimer *time.Timer // closes a session that never connects

	mu      sync.Mutex
	st      state            // guarded by mu
	pending []engineio.Entry // guarded by mu: frames queued while connecting
	joined  Joined           // guarded by mu
	ctx     context.Context  // guarded by mu: ends with the session
	cancel  context.CancelFunc
}

// Open is engineio.Handler: a new Engine.IO session.
func (s *Server) Open(sess *engineio.Session, r *http.Request) engineio.Receiver {
	c := &Conn{
		srv: s, sess: sess, id: "s" + sess.ID()[:26],
		qtoken: strings.Clone(r.URL.Query().Get("token")),
		remote: r.RemoteAddr,
		header: http.Header{},
	}
	for _, k := range []string{"Origin", "X-Forwarded-For", "X-Real-Ip", "Authorization"} {
		if v := r.Header.Values(k); len(v) > 0 {
			c.header[k] = []string{strings.Clone(v[0])}
		}
	}
	c.ctx, c.cancel = context.WithCancel(s.base)
	c.connTimer = time.AfterFunc(s.cfg.ConnectTimeout, func() {
		c.mu.Lock()
		st := c.st
		c.mu.Unlock()
		if st == idle {
			sess.Close("connect timeout")
		}
	})
	return c
}

// ID is the connection id (hub.Member).
func (c *Conn) ID() string { return c.id }

// TrySend queues a merchant frame (hub.Member).
func (c *Conn) TrySend(e sendq.Entry) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.st {
	case connecting:
		c.pending = append(c.pending, engineio.Entry{Data: e.Data, TS: e.TS})
		return true
	case connected:
		return c.sess.Push(engineio.Entry{Data: e.Data, TS: e.TS})
	}
	return false
}

// Send queues a replayed frame (hub.Member). Replays run while connecting,
// into the pending list, which REPLAY_MAX bounds; it never waits.
func (c *Conn) Send(_ context.Context, e sendq.Entry) error {
	if !c.TrySend(e) {
		return errors.New("socket.io session closed or full")
	}
	return nil
}

// Close ends the client's Engine.IO session: the client reconnects (and
// recovers from its offset), as after a transport failure.
func (c *Conn) Close(reason string) { c.sess.Close(reason) }

// Overflow closes a client that cannot keep up (hub.Member); it
// reconnects and recovers from its offset.
func (c *Conn) Overflow() {
	c.srv.cfg.SlowConsumer()
	c.sess.Close("slow consumer")
}

// Message is engineio.Receiver: one socket.io packet.
func (c *Conn) Message(data []byte) {
	p, err := Decode(data)
	if err != nil {
		c.sess.Close("parse error")
		return
	}
	if p.Namespace != "/" {
		if p.Type == Connect {
			c.push(AppendNS(nil, ConnectError, p.Namespace, []byte(`{"message":"Invalid namespace"}`)))
		}
		return
	}
	switch p.Type {
	case Connect:
		c.connect(p.Data)
	case Disconnect:
		c.sess.Close("client namespace disconnect")
	case Event:
		c.event(p)
	}
	// ACK: this server asks for none. CONNECT_ERROR: clients do not send it.
}

// Closed is engineio.Receiver: the session ended.
func (c *Conn) Closed(string) {
	c.connTimer.Stop()
	c.mu.Lock()
	j := c.joined
	c.joined, c.st, c.pending = nil, closed, nil
	c.mu.Unlock()
	c.cancel()
	if j != nil {
		j.Leave()
	}
}

// push queues a raw socket.io packet as an Engine.IO message.
func (c *Conn) push(sio []byte) {
	if !c.sess.Push(engineio.Entry{Data: engineio.AppendPacket(nil, engineio.Message, sio), Raw: true}) {
		c.sess.Close("slow consumer")
	}
}

// auth is the CONNECT payload: the token and, from a client that was
// connected before, its recovery pid and offset.
type auth struct {
	Token  string `json:"token"`
	PID    string `json:"pid"`
	Offset string `json:"offset"`
}

// connect handles CONNECT: the Join runs on a goroutine of its own (Redis,
// maybe the order API) so the transport keeps reading pongs.
func (c *Conn) connect(data []byte) {
	var a auth
	if len(data) > 0 {
		if err := json.Unmarshal(data, &a); err != nil {
			c.refuse(&Refusal{Code: codeInvalidField, Message: "auth: " + err.Error()})
			return
		}
	}
	since := int64(hub.NoSince)
	if a.PID != "" && a.Offset != "" {
		n, err := parseOffset(a.Offset)
		if err != nil {
			c.refuse(&Refusal{Code: codeInvalidSince, Message: err.Error()})
			return
		}
		since = n
	}
	tok := a.Token
	if tok == "" {
		tok = c.qtoken
	}
	if tok == "" {
		tok = bearer(c.header.Get("Authorization"))
	}
	c.mu.Lock()
	if c.st != idle {
		c.mu.Unlock()
		return // a second CONNECT while connecting or connected: ignored
	}
	c.st = connecting
	c.mu.Unlock()
	go c.join(JoinRequest{Token: tok, Since: since, RemoteAddr: c.remote, Header: c.header}, a.PID)
}

func (c *Conn) join(req JoinRequest, oldPID string) {
	ctx, cancel := context.WithTimeout(c.ctx, c.srv.cfg.JoinTimeout)
	defer cancel()
	j, err := c.srv.backend.Join(ctx, req, c)
	if err != nil {
		c.mu.Lock()
		if c.st == connecting {
			c.st, c.pending = idle, nil
		}
		c.mu.Unlock()
		var ref *Refusal
		if !errors.As(err, &ref) {
			ref = &Refusal{Code: codeUnavailable, Message: "cannot reach the event stream; retry shortly"}
		}
		c.refuse(ref)
		return
	}
	if !c.adopt(j) {
		return
	}
	// The replay fills pending; it never waits (Send), and REPLAY_MAX
	// bounds it.
	if err := j.Replay(c.ctx); err != nil {
		c.sess.Close("replay failed")
		return
	}
	c.mu.Lock()
	if c.st != connecting {
		c.mu.Unlock()
		return
	}
	recovered := req.Since >= 0 && !hasResync(c.pending)
	pid := engineio.RandomID()
	if recovered && validPID(oldPID) {
		pid = oldPID
	}
	ans, _ := json.Marshal(struct {
		SID string `json:"sid"`
		PID string `json:"pid"`
	}{c.id, pid})
	out := make([]engineio.Entry, 0, len(c.pending)+1)
	out = append(out, engineio.Entry{Data: engineio.AppendPacket(nil, engineio.Message, Append(nil, Connect, NoID, ans)), Raw: true})
	for i, e := range c.pending {
		// hello tells its seq as the offset only on a fresh connect: after
		// a recovery it comes before the replayed events, and a client cut
		// off between them must resume from its old offset.
		out = append(out, engineio.Entry{Data: AppendFrame(nil, e.Data, i > 0 || req.Since < 0), TS: e.TS, Raw: true})
	}
	c.pending = nil
	c.st = connected
	c.connTimer.Stop()
	ok := c.sess.PushAll(out)
	c.mu.Unlock()
	if ok {
		c.srv.cfg.Connected(recovered)
	}
}

// adopt records the Join unless the session closed meanwhile.
func (c *Conn) adopt(j Joined) bool {
	c.mu.Lock()
	if c.st == connecting {
		c.joined = j
		c.mu.Unlock()
		return true
	}
	c.mu.Unlock()
	j.Leave()
	return false
}

// refuse answers a CONNECT with CONNECT_ERROR; the message is the HTTP
// error's code (PROTOCOL.md "Other transports"), data has the details.
func (c *Conn) refuse(r *Refusal) {
	c.srv.cfg.Refused(r.Code)
	c.push(connectError(r))
}

// connectError is the CONNECT_ERROR packet of a refusal.
func connectError(r *Refusal) []byte {
	b, _ := json.Marshal(struct {
		Message string         `json:"message"`
		Data    wire.ErrorData `json:"data"`
	}{r.Code, wire.ErrorData{Code: r.Code, Message: r.Message}})
	return Append(nil, ConnectError, NoID, b)
}

// event turns a client event into the frame it mirrors and answers it:
// with an ack when the client asked for one, else with the frame's reply.
func (c *Conn) event(p Packet) {
	c.mu.Lock()
	j, st := c.joined, c.st
	c.mu.Unlock()
	if st != connected || j == nil {
		return
	}
	name, args, err := EventArgs(p)
	var reply []byte
	if err == nil {
		var frame []byte
		frame, err = clientFrame(name, args)
		if err == nil {
			reply = j.Handle(c.ctx, frame)
		}
	}
	if err != nil {
		reply = wire.ErrorFrame(codeInvalidField, err.Error())
	}
	if p.ID == NoID {
		if reply != nil && !c.sess.Push(engineio.Entry{Data: reply}) {
			c.Overflow()
		}
		return
	}
	c.push(Append(nil, Ack, p.ID, ackResult(reply)))
}

// clientFrame builds the frame a client event mirrors: ping; process and
// seen with the order as data; ack with {seq: N} or N.
func clientFrame(name string, args []json.RawMessage) ([]byte, error) {
	switch name {
	case "ping":
		return []byte(`{"event":"ping"}`), nil
	case "process", "seen":
		if len(args) != 1 {
			return nil, fmt.Errorf("%s takes one argument {\"orderNo\":\"...\"}", name)
		}
		return json.Marshal(struct {
			Event string          `json:"event"`
			Data  json.RawMessage `json:"data"`
		}{name, args[0]})
	case "ack":
		if len(args) != 1 {
			return nil, errors.New(`ack takes one argument {"seq":N} or N`)
		}
		var seq uint64
		if json.Unmarshal(args[0], &seq) != nil {
			var obj struct {
				Seq *uint64 `json:"seq"`
			}
			if json.Unmarshal(args[0], &obj) != nil || obj.Seq == nil {
				return nil, errors.New(`ack takes one argument {"seq":N} or N`)
			}
			seq = *obj.Seq
		}
		return []byte(`{"event":"ack","seq":` + strconv.FormatUint(seq, 10) + `}`), nil
	}
	return nil, fmt.Errorf("unknown event %s", strconv.Quote(name))
}

// ackResult is what an acknowledgement callback receives: [{"ok":true}],
// or [{"ok":false,"error":{"code","message"}}] when the reply is an error.
func ackResult(reply []byte) []byte {
	var f struct {
		Event string          `json:"event"`
		Data  json.RawMessage `json:"data"`
	}
	if reply != nil && json.Unmarshal(reply, &f) == nil && f.Event == wire.EventError {
		return append(append([]byte(`[{"ok":false,"error":`), f.Data...), "}]"...)
	}
	return []byte(`[{"ok":true}]`)
}

func hasResync(es []engineio.Entry) bool {
	for _, e := range es {
		if h, err := wire.ParseHead(e.Data); err == nil && h.Event == wire.EventResync {
			return true
		}
	}
	return false
}

var errOffset = errors.New("offset must be the last seq seen (decimal digits)")

func parseOffset(v string) (int64, error) {
	if v == "" || len(v) > 19 || strings.TrimLeft(v, "0123456789") != "" {
		return 0, errOffset
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, errOffset
	}
	return n, nil
}

// validPID accepts only ids this server could have made (RandomID).
func validPID(s string) bool {
	if len(s) != 26 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= 'a' && s[i] <= 'z' || s[i] >= '2' && s[i] <= '7') {
			return false
		}
	}
	return true
}

func bearer(h string) string {
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

func (c *Conn) logf(level slog.Level, msg string, attrs ...slog.Attr) {
	attrs = append(attrs, slog.String(logging.KeyConn, c.id))
	c.srv.log.LogAttrs(context.Background(), level, msg, attrs...)
}
