package engineio

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"orderpush/gateway/internal/transport/ws"
)

// Receiver is what the layer above does with a session's traffic.
type Receiver interface {
	// Message is called for each text message, in order, on the goroutine
	// reading the transport (the websocket's reader, or a POST's handler);
	// a slow Message delays the next one.
	Message(data []byte)
	// Stalled is called when a websocket write was still waiting after the
	// write timeout and goes on: the peer takes its bytes slowly, a slow
	// consumer. It must not block (the session's writes wait for it).
	Stalled()
	// Dead is called when a pong did not come within pingTimeout. The
	// receiver ends the session (CloseNow, or a way of its own that ends
	// in it).
	Dead()
	// Closed is called once, on a goroutine of its own, when the session
	// is over, with the reason.
	Closed(reason string)
}

type transport uint8

const (
	polling transport = iota
	wsOnly
)

var (
	pingPacket  = []byte{byte(Ping)}
	noopPacket  = []byte{byte(Noop)}
	closePacket = []byte{byte(Close)}
)

// errClosed is Write's error once the session ended.
var errClosed = errors.New("engine.io session closed")

// Session is one Engine.IO connection. It keeps no queue of its own: the
// layer above writes a batch at a time (Write, one caller at a time) and
// keeps what waits; a polling batch waits here only until the next GET
// takes it.
type Session struct {
	// Static after the handshake.
	srv     *Server
	id      string
	rcv     Receiver
	release func() // from Config.Admit; called once the session ends

	wmu sync.Mutex // serialises websocket writes (and the upgrade's hand-over)

	mu        sync.Mutex
	taken     sync.Cond       // L is &mu: signalled when a GET (or the upgrade) took the payload, and at the end
	mode      transport       // guarded by mu
	ws        *websocket.Conn // guarded by mu: set on upgrade or websocket handshake
	out       *ws.Output      // guarded by mu: ws's output, set with it
	payload   [][]byte        // guarded by mu: polling: packets for the next GET; nil while empty
	gen       uint64          // guarded by mu: payloads taken so far
	polled    bool            // guarded by mu: a GET is being answered (overlap check)
	posting   bool            // guarded by mu: a POST is being read
	upgrading bool            // guarded by mu: a websocket probe is under way
	release1  bool            // guarded by mu: answer the parked GET now (the probe wants polling paused)
	closed    bool            // guarded by mu
	awaitPong bool            // guarded by mu
	hb        *time.Timer     // guarded by mu: next ping, or the pong deadline
	wake      chan struct{}   // never closed; a parked GET waits on it (capacity 1)
	endOnce   sync.Once
}

func newSession(srv *Server, id string) *Session {
	s := &Session{srv: srv, id: id, wake: make(chan struct{}, 1)}
	s.taken.L = &s.mu
	return s
}

// ID is the session id (the sid).
func (s *Session) ID() string { return s.id }

// Receiver is the layer above of this session.
func (s *Session) Receiver() Receiver { return s.rcv }

// Send writes one packet outside the layer above's stream (a refusal
// before socket.io's CONNECT, a ping) without waiting for the peer: on
// websocket it is written at once, on polling it goes with the next GET.
func (s *Session) Send(pkt []byte) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if s.mode == polling {
		s.payload = append(s.payload, pkt)
		s.signalLocked()
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	if err := s.writeWS([][]byte{pkt}); err != nil {
		s.CloseNow()
	}
}

// Write writes a batch of packets, in order: on websocket one message
// each, in one network write; on polling it waits until a GET took them
// (the client polls again at once after each answer; a client that stops
// is ended by the ping timeout). One caller at a time. An error means the
// session is over.
func (s *Session) Write(pkts [][]byte) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	if s.mode != polling {
		s.mu.Unlock()
		return s.writeWS(pkts)
	}
	s.payload = append(s.payload, pkts...)
	s.signalLocked()
	gen := s.gen
	for s.gen == gen && !s.closed {
		s.taken.Wait()
	}
	taken := s.gen != gen
	s.mu.Unlock()
	if !taken {
		return errClosed
	}
	return nil
}

// writeWS writes packets to the websocket.
func (s *Session) writeWS(pkts [][]byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	conn, out := s.ws, s.out
	s.mu.Unlock()
	return writeTo(conn, out, pkts)
}

// writeTo writes packets as websocket messages gathered into one network
// write, within the write timeout (see ws.Output); wmu is held.
func writeTo(conn *websocket.Conn, out *ws.Output, pkts [][]byte) error {
	out.Begin()
	var err error
	for _, p := range pkts {
		// The library only appends to the gather: the network write, and
		// its deadline, are End's.
		if err = conn.Write(context.Background(), websocket.MessageText, p); err != nil {
			break
		}
	}
	if eerr := out.End(); err == nil {
		err = eerr
	}
	return err
}

// stalled is the websocket output's report of a backed-up write. A
// refused handshake's writes come before there is a receiver.
func (s *Session) stalled() {
	if s.rcv != nil {
		s.rcv.Stalled()
	}
}

// Close ends the session with Engine.IO's goodbye: the websocket is
// closed, or the close packet goes with the next GET (waiting for it at
// most the write timeout). It returns when the goodbye is out.
func (s *Session) Close(reason string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if s.mode != polling {
		conn := s.ws
		s.mu.Unlock()
		s.wmu.Lock()
		_ = conn.Close(websocket.StatusNormalClosure, "")
		s.wmu.Unlock()
		s.end(reason) // the reader ends too, and would say "transport close"
		return
	}
	s.payload = append(s.payload, closePacket)
	s.signalLocked()
	gen := s.gen
	t := time.AfterFunc(s.srv.cfg.WriteTimeout, func() {
		s.mu.Lock()
		s.taken.Broadcast()
		s.mu.Unlock()
	})
	start := time.Now()
	for s.gen == gen && !s.closed && time.Since(start) < s.srv.cfg.WriteTimeout {
		s.taken.Wait()
	}
	s.mu.Unlock()
	t.Stop()
	s.end(reason)
}

// CloseNow drops the session without a goodbye; it does not block.
func (s *Session) CloseNow() {
	s.mu.Lock()
	conn := s.ws
	s.mu.Unlock()
	if conn != nil {
		_ = conn.CloseNow() // the reader ends, and with it the session
	}
	s.end("forced close")
}

// end is the session's one end: it wakes whoever waits, forgets the
// session and tells the receiver, on a goroutine of its own (the caller
// may be the layer above's writer, which the receiver waits for).
func (s *Session) end(reason string) {
	s.endOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		clear(s.payload)
		s.payload = nil
		if s.hb != nil {
			s.hb.Stop()
		}
		s.taken.Broadcast()
		s.signalLocked()
		s.mu.Unlock()
		s.srv.forget(s)
		if s.release != nil {
			s.release()
		}
		go s.rcv.Closed(reason)
	})
}

func (s *Session) signalLocked() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// startHeartbeat arms the first server ping.
func (s *Session) startHeartbeat() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.hb = time.AfterFunc(s.srv.cfg.PingInterval, s.heartbeat)
	}
}

// heartbeat sends a ping, or reports a peer whose pong is overdue. It runs
// on the timer's goroutine, which exists only while it runs.
func (s *Session) heartbeat() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if s.awaitPong {
		s.mu.Unlock()
		s.rcv.Dead()
		return
	}
	s.awaitPong = true
	s.hb.Reset(s.srv.cfg.PingTimeout)
	s.mu.Unlock()
	s.Send(pingPacket)
}

// packet handles one packet from the client.
func (s *Session) packet(p Packet) {
	switch p.Type {
	case Message:
		if p.Binary {
			s.CloseNowFor("parse error")
			return
		}
		s.rcv.Message(p.Data)
	case Pong:
		s.mu.Lock()
		if s.awaitPong && !s.closed {
			s.awaitPong = false
			s.hb.Reset(s.srv.cfg.PingInterval)
		}
		s.mu.Unlock()
	case Close:
		s.CloseNowFor("forced close")
	}
	// Ping (v3 clients), Upgrade and Noop outside an upgrade: nothing to do.
}

// CloseNowFor is CloseNow with the reason the receiver is told.
func (s *Session) CloseNowFor(reason string) {
	s.end(reason)
	s.CloseNow()
}

// begin marks a GET or a POST (busy: polled or posting) under way. A
// second one at the same time is a protocol error (Engine.IO) that ends the
// session; none is served once the session left polling.
func (s *Session) begin(w http.ResponseWriter, busy *bool) bool {
	s.mu.Lock()
	if *busy || s.mode != polling {
		overlap := *busy
		s.mu.Unlock()
		if overlap {
			s.CloseNowFor("transport error")
		}
		httpError(w, codeBadRequest, "Bad request")
		return false
	}
	*busy = true
	s.mu.Unlock()
	return true
}

// poll answers a long-poll GET: what waits, or, when nothing does, what
// comes first (a ping comes within pingInterval).
func (s *Session) poll(w http.ResponseWriter, r *http.Request) {
	if !s.begin(w, &s.polled) {
		return
	}
	s.mu.Lock()
	for len(s.payload) == 0 && !s.closed && s.mode == polling && !s.release1 {
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-r.Context().Done():
			s.mu.Lock()
			s.polled = false
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
	}
	s.release1 = false
	var body []byte
	switch {
	case s.mode == polling && len(s.payload) > 0:
		body = bytes.Join(s.payload, []byte{Separator})
		clear(s.payload)
		s.payload = nil
		s.gen++
		s.taken.Broadcast()
	case s.closed:
		body = closePacket
	default:
		body = noopPacket // upgraded meanwhile: release the poll
	}
	s.mu.Unlock()
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(s.srv.cfg.WriteTimeout))
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(body)
	s.mu.Lock()
	s.polled = false
	s.mu.Unlock()
	if err != nil {
		s.CloseNowFor("transport error")
	}
}

// post reads a payload POST and hands its packets over in order.
func (s *Session) post(w http.ResponseWriter, r *http.Request) {
	if !s.begin(w, &s.posting) {
		return
	}
	defer func() {
		s.mu.Lock()
		s.posting = false
		s.mu.Unlock()
	}()
	body, err := readBody(r, s.srv.cfg.MaxPayload)
	if err != nil {
		// maxPayload was announced in the handshake; a client that sends
		// more is broken or hostile.
		s.CloseNowFor("transport error")
		httpError(w, codeBadRequest, err.Error())
		return
	}
	ps, err := DecodePayload(body, maxPacketsPerPost)
	if err != nil {
		s.CloseNowFor("parse error")
		httpError(w, codeBadRequest, err.Error())
		return
	}
	for _, p := range ps {
		s.packet(p)
	}
	w.Header().Set("Content-Type", "text/html")
	_, _ = w.Write([]byte("ok"))
}

// upgrade runs the probe over a new websocket of a polling session: 2probe,
// 3probe, the parked GET released, then 5, after which the websocket
// carries everything: what waited for a GET goes first, so nothing is lost
// or sent twice. It then reads the websocket until it ends.
func (s *Session) upgrade(conn *websocket.Conn, out *ws.Output) {
	ok := s.probe(conn)
	s.wmu.Lock() // the hand-over is the websocket's first write
	s.mu.Lock()
	s.upgrading = false
	if !ok || s.closed {
		s.mu.Unlock()
		s.wmu.Unlock()
		_ = conn.CloseNow()
		return
	}
	s.mode, s.ws, s.out = wsOnly, conn, out
	left := s.payload
	s.payload = nil
	s.gen++
	s.taken.Broadcast()
	s.signalLocked() // a GET parked anyway gets a noop
	s.mu.Unlock()
	err := writeTo(conn, out, left)
	s.wmu.Unlock()
	if err != nil {
		s.CloseNowFor("transport error")
		return
	}
	s.read(conn)
}

func (s *Session) probe(conn *websocket.Conn) bool {
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.UpgradeTimeout)
	defer cancel()
	typ, b, err := conn.Read(ctx)
	if err != nil || typ != websocket.MessageText || string(b) != "2probe" {
		return false
	}
	if err := conn.Write(ctx, websocket.MessageText, []byte("3probe")); err != nil {
		return false
	}
	s.mu.Lock()
	s.release1 = true
	s.signalLocked()
	s.mu.Unlock()
	typ, b, err = conn.Read(ctx)
	return err == nil && typ == websocket.MessageText && string(b) == string(Upgrade)
}

// read reads a websocket session's packets until the connection ends.
// Reads get no cancellable context: a cancelled read kills the connection.
func (s *Session) read(conn *websocket.Conn) {
	for {
		typ, b, err := conn.Read(context.Background())
		if err != nil {
			s.end("transport close")
			return
		}
		if typ == websocket.MessageBinary {
			s.packet(Packet{Type: Message, Data: b, Binary: true})
			continue
		}
		p, err := DecodePacket(b)
		if err != nil {
			s.CloseNowFor("parse error")
			return
		}
		s.packet(p)
	}
}
