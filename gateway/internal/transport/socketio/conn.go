package socketio

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"orderpush/gateway/internal/session"
	"orderpush/gateway/internal/session/sendq"
	"orderpush/gateway/internal/transport/engineio"
	"orderpush/pkg/wire"
)

// Backend is the gateway's side of a socket.io client: its one admission
// path, shared with the other transports.
type Backend interface {
	// Admit runs the admission for a CONNECT (token, role, origin, since,
	// limits, drain, presence, hub join). An admitted client's session has
	// its hello, and resync if any, queued and is not started.
	Admit(req AdmitRequest) (Joined, *Refusal)
}

// AdmitRequest is what a CONNECT asks for.
type AdmitRequest struct {
	// Request stands for the Engine.IO handshake: its RemoteAddr and the
	// headers admission reads (Origin, X-Forwarded-For, Authorization).
	Request *http.Request
	Token   string
	// Since is the recovery offset as sent; HasSince tells whether the
	// client sent one.
	Since    string
	HasSince bool
}

// Joined is an admitted client.
type Joined interface {
	Session() *session.Session
	// Replay sends what the client missed since its offset.
	Replay(ctx context.Context) error
	// Ended undoes the admission once the session has ended.
	Ended()
}

// Refusal is a connect refused with an HTTP error's code.
type Refusal struct {
	Code    string // wire.Code..., e.g. "unauthorized"
	Message string
}

type state uint8

const (
	idle       state = iota // no CONNECT yet, or the last one was refused
	connecting              // admission under way
	joined                  // admitted: the session runs
	over                    // the Engine.IO session ended
)

// connectMarker is queued on the session after the replay: frames before
// it are held back until the CONNECT answer, which can say only then
// whether the client recovered without a resync, has gone out first.
var connectMarker = []byte("connected")

// Conn is one socket.io client on one Engine.IO session. Once admitted it
// is the session's Writer: the session's drainer writes through it.
type Conn struct {
	// Static after Open.
	srv       *Server
	eio       *engineio.Session
	qtoken    string      // ?token= of the handshake; never logged
	remote    string      // handshake RemoteAddr
	header    http.Header // handshake headers admission reads
	connTimer *time.Timer // closes a session that never connects

	mu     sync.Mutex
	st     state  // guarded by mu
	j      Joined // guarded by mu: set when admitted
	oldPID string // guarded by mu: the pid of a recovering CONNECT
	since  bool   // guarded by mu: the CONNECT had a recovery offset

	// Owned by the session's drainer (WriteFrames).
	sent     bool     // the CONNECT answer went out
	held     [][]byte // packets before it
	resynced bool     // a resync is among them
}

// Open is engineio.Handler: a new Engine.IO session.
func (s *Server) Open(sess *engineio.Session, r *http.Request) engineio.Receiver {
	c := &Conn{
		srv: s, eio: sess,
		qtoken: strings.Clone(r.URL.Query().Get("token")),
		remote: strings.Clone(r.RemoteAddr),
		header: http.Header{},
	}
	for _, k := range []string{"Origin", "X-Forwarded-For", "Authorization"} {
		if v := r.Header.Values(k); len(v) > 0 {
			c.header[k] = []string{strings.Clone(v[0])}
		}
	}
	c.connTimer = time.AfterFunc(s.cfg.ConnectTimeout, func() {
		c.mu.Lock()
		st := c.st
		c.mu.Unlock()
		if st == idle {
			sess.CloseNowFor("connect timeout")
		}
	})
	return c
}

func (c *Conn) admitted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.j != nil
}

func (c *Conn) session() *session.Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.j == nil {
		return nil
	}
	return c.j.Session()
}

// Message is engineio.Receiver: one socket.io packet.
func (c *Conn) Message(data []byte) {
	p, err := Decode(data)
	if err != nil {
		c.eio.CloseNowFor("parse error")
		return
	}
	if p.Namespace != "/" {
		if p.Type == Connect {
			c.eio.Send(engineio.AppendPacket(nil, engineio.Message, AppendNS(nil, ConnectError, p.Namespace, []byte(`{"message":"Invalid namespace"}`))))
		}
		return
	}
	switch p.Type {
	case Connect:
		c.connect(p.Data)
	case Disconnect:
		c.eio.CloseNowFor("client namespace disconnect")
	case Event:
		c.event(p)
	}
	// ACK: this server asks for none. CONNECT_ERROR: clients do not send it.
}

// Stalled is engineio.Receiver: a write to the client backed up past the
// write timeout. An admitted client is a slow consumer, as with a full
// queue; before that the write is bounded by the Engine.IO websocket's
// own limits.
func (c *Conn) Stalled() {
	if sess := c.session(); sess != nil {
		sess.Overflow()
	}
}

// Dead is engineio.Receiver: the pong did not come.
func (c *Conn) Dead() {
	if sess := c.session(); sess != nil {
		sess.DeadPeer()
	}
	c.eio.CloseNowFor("ping timeout")
}

// Closed is engineio.Receiver: the Engine.IO session ended. It ends the
// client's session and undoes its admission.
func (c *Conn) Closed(string) {
	c.connTimer.Stop()
	c.mu.Lock()
	j := c.j
	c.st = over
	c.mu.Unlock()
	if j != nil {
		j.Session().End()
		j.Ended()
	}
}

// auth is the CONNECT payload: the token and, from a client that was
// connected before, its recovery pid and offset.
type auth struct {
	Token  string `json:"token"`
	PID    string `json:"pid"`
	Offset string `json:"offset"`
}

// connect handles CONNECT: the admission runs on a goroutine of its own
// (Redis, maybe the order API), so the transport keeps reading pongs and
// the reader's stack stays small.
func (c *Conn) connect(data []byte) {
	var a auth
	if len(data) > 0 {
		if err := json.Unmarshal(data, &a); err != nil {
			c.refuse(&Refusal{Code: wire.CodeInvalidField, Message: "auth: " + err.Error()})
			return
		}
	}
	tok := a.Token
	if tok == "" {
		tok = c.qtoken
	}
	req := AdmitRequest{
		// A stand-in for the handshake request, which is not kept.
		Request: &http.Request{Method: http.MethodGet, URL: &url.URL{}, Header: c.header, RemoteAddr: c.remote},
		Token:   tok,
	}
	if a.PID != "" && a.Offset != "" {
		req.Since, req.HasSince = a.Offset, true
	}
	c.mu.Lock()
	if c.st != idle {
		c.mu.Unlock()
		return // a second CONNECT while connecting or connected: ignored
	}
	c.st = connecting
	c.oldPID, c.since = a.PID, req.HasSince
	c.mu.Unlock()
	go c.admit(req)
}

func (c *Conn) admit(req AdmitRequest) {
	j, ref := c.srv.backend.Admit(req)
	if ref != nil {
		c.mu.Lock()
		if c.st == connecting {
			c.st = idle
		}
		c.mu.Unlock()
		c.refuse(ref)
		return
	}
	c.mu.Lock()
	if c.st != connecting {
		// The Engine.IO session ended meanwhile.
		c.mu.Unlock()
		j.Session().End()
		j.Ended()
		return
	}
	c.st, c.j = joined, j
	c.connTimer.Stop()
	sess := j.Session()
	// Started under mu: Closed, which ends the session, comes after.
	sess.Start(c.srv.base, c, func(ctx context.Context) error {
		if err := j.Replay(ctx); err != nil {
			return err
		}
		return sess.Send(ctx, sendq.Entry{Data: connectMarker})
	})
	c.mu.Unlock()
}

// refuse answers a CONNECT with CONNECT_ERROR; the message is the HTTP
// error's code (PROTOCOL.md "Other transports"), data has the details.
func (c *Conn) refuse(r *Refusal) {
	c.eio.Send(engineio.AppendPacket(nil, engineio.Message, connectError(r)))
}

// connectError is the CONNECT_ERROR packet of a refusal.
func connectError(r *Refusal) []byte {
	b, _ := json.Marshal(struct {
		Message string         `json:"message"`
		Data    wire.ErrorData `json:"data"`
	}{r.Code, wire.ErrorData{Code: r.Code, Message: r.Message}})
	return Append(nil, ConnectError, NoID, b)
}

// event turns a client event into the frame it mirrors and hands it to the
// session, which applies CLIENT_MSG_RATE to every one: without an
// acknowledgement the answer (pong, error) comes as an event; with one, the
// callback gets the result.
func (c *Conn) event(p Packet) {
	sess := c.session()
	if sess == nil {
		return // before the CONNECT was admitted
	}
	frame := clientFrame(p)
	if p.ID == NoID {
		sess.Handle(frame)
		return
	}
	ack := engineio.AppendPacket(nil, engineio.Message, Append(nil, Ack, p.ID, ackResult(sess.Answer(frame))))
	if !sess.TrySend(sendq.Entry{Data: ack}) {
		sess.Overflow()
	}
}

// clientFrame builds the client frame an EVENT mirrors (PROTOCOL.md
// "Client frames"): ping; process and seen with their one argument as
// data; ack with its argument, N or {"seq":N}, as seq. The session
// validates it like any other client frame, so a malformed event gets the
// same error (and counts against the limit) as a malformed frame.
func clientFrame(p Packet) []byte {
	name, args, err := EventArgs(p)
	if err != nil {
		return nil // not JSON: the session answers invalid_frame
	}
	b := []byte(`{"event":`)
	n, _ := json.Marshal(name)
	b = append(b, n...)
	if len(args) == 1 {
		switch name {
		case wire.EventProcess, "seen":
			b = append(append(b, `,"data":`...), args[0]...)
		case "ack":
			seq := args[0]
			var obj struct {
				Seq json.RawMessage `json:"seq"`
			}
			if firstByte(seq) == '{' && json.Unmarshal(seq, &obj) == nil && obj.Seq != nil {
				seq = obj.Seq
			}
			b = append(append(b, `,"seq":`...), seq...)
		}
	}
	return append(b, '}')
}

// ackResult is what an acknowledgement callback receives: [{"ok":true}],
// or [{"ok":false,"error":{"code","message"}}] when the answer is an error.
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

// WriteFrames is session.Writer: each frame becomes an EVENT, an
// acknowledgement goes as it is. Until the connect marker, packets are
// held; at the marker the CONNECT answer goes out, then them.
func (c *Conn) WriteFrames(batch []sendq.Entry) (int, error) {
	sess := c.session()
	recovering := c.recovering()
	pkts := make([][]byte, 0, len(batch)+len(c.held)+1)
	n := len(batch)
	for i, e := range batch {
		if sess != nil && sess.Overflowed() {
			n = i
			break
		}
		var p []byte
		switch {
		case len(e.Data) == 0:
			continue
		case &e.Data[0] == &connectMarker[0]:
			pkts = append(pkts, c.connectAnswer(sess.ID()))
			pkts = append(pkts, c.held...)
			c.held, c.sent = nil, true
			continue
		case e.Data[0] >= '0' && e.Data[0] <= '9':
			p = e.Data // an Engine.IO packet (an acknowledgement)
		default:
			f, off := frameOf(e)
			if f.Event == wire.EventResync {
				c.resynced = true
			}
			// hello tells its seq as the offset only on a fresh connect:
			// after a recovery it comes before the replayed events, and a
			// client cut off between them must resume from its old offset.
			p = appendEvent(nil, f, off, f.Event != wire.EventHello || !recovering)
		}
		if !c.sent {
			c.held = append(c.held, p)
			continue
		}
		pkts = append(pkts, p)
	}
	if len(pkts) > 0 {
		if err := c.eio.Write(pkts); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func (c *Conn) recovering() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.since
}

// connectAnswer is the CONNECT answer: the socket id is the connection id
// (hello.connId), and the pid is the client's old one when it recovered
// without a resync (socket.recovered === true).
func (c *Conn) connectAnswer(connID string) []byte {
	c.mu.Lock()
	recovered := c.since && !c.resynced && validPID(c.oldPID)
	pid := c.oldPID
	c.mu.Unlock()
	if !recovered {
		pid = engineio.RandomID()
	}
	ans, _ := json.Marshal(struct {
		SID string `json:"sid"`
		PID string `json:"pid"`
	}{connID, pid})
	return engineio.AppendPacket(nil, engineio.Message, Append(nil, Connect, NoID, ans))
}

// WriteClose is session.Writer: the Engine.IO session ends (the client
// reconnects and recovers from its offset; after an expired token its
// CONNECT is refused until it brings a new one).
func (c *Conn) WriteClose(session.Reason, string) error {
	c.eio.Close("session closed")
	return nil
}

// CloseNow is session.Writer: the Engine.IO session is dropped.
func (c *Conn) CloseNow() { c.eio.CloseNow() }

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
