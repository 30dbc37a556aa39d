package engineio

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"orderpush/pkg/logging"
)

// Entry is one outgoing item. A Raw entry's Data is a complete Engine.IO
// packet ("2", "40{...}"); any other entry is passed to Config.Encode when
// it is written, so a frame shared by many sessions is encoded by the
// writer of each, off the fan-out path. TS is the publish time in Unix
// milliseconds (0 when not live), for the caller's lag metric.
type Entry struct {
	Data []byte
	TS   int64
	Raw  bool
}

// Receiver is what the layer above does with a session's traffic.
type Receiver interface {
	// Message is called for each text message, in order, on the goroutine
	// reading the transport; a slow Message delays the next one.
	Message(data []byte)
	// Closed is called once, when the session ends, with the reason.
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

// Session is one Engine.IO connection.
type Session struct {
	// Static after start.
	srv *Server
	id  string
	rcv Receiver

	mu         sync.Mutex
	q          []Entry         // guarded by mu; nil while empty
	n          int             // guarded by mu: entries counted against the limit (not Raw)
	closed     bool            // guarded by mu
	reason     string          // guarded by mu
	mode       transport       // guarded by mu
	upgrading  bool            // guarded by mu: a websocket probe is under way
	polled     bool            // guarded by mu: a GET is being answered (overlap check)
	posting    bool            // guarded by mu: a POST is being read
	wake       chan struct{}   // never closed; a parked GET waits on it (capacity 1)
	ws         *websocket.Conn // guarded by mu: set on upgrade or websocket handshake
	draining   bool            // guarded by mu: a websocket drainer runs
	awaitPong  bool            // guarded by mu
	hb         *time.Timer     // guarded by mu: next ping, or the pong deadline
	release    func()          // from Config.Admit; called once the session ends
	closedOnce sync.Once
}

func (s *Session) releaseSlot() {
	if s.release != nil {
		s.release()
	}
}

// ID is the session id (the sid).
func (s *Session) ID() string { return s.id }

// Push queues e without blocking; false when the session is closed or its
// queue (Config.QueueSize entries) is full: the caller decides, usually by
// closing the session.
func (s *Session) Push(e Entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || (!e.Raw && s.n >= s.srv.cfg.QueueSize) {
		return false
	}
	s.pushLocked(e)
	return true
}

// PushAll queues es as one run, beyond the queue limit: a reconnect's
// replay, which the caller bounds (REPLAY_MAX).
func (s *Session) PushAll(es []Entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	for _, e := range es {
		s.pushLocked(e)
	}
	return true
}

func (s *Session) pushLocked(e Entry) {
	s.q = append(s.q, e)
	if !e.Raw {
		s.n++
	}
	s.kickLocked()
}

// kickLocked gets the queue moving: a websocket drainer, or the parked GET.
func (s *Session) kickLocked() {
	if s.ws != nil && s.mode == wsOnly {
		if !s.draining {
			s.draining = true
			go s.drain(s.ws)
		}
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// takeLocked removes and returns what is queued, at most about max bytes
// of raw data (at least one entry).
func (s *Session) takeLocked(max int) []Entry {
	size, i := 0, 0
	for i < len(s.q) {
		size += len(s.q[i].Data) + 1
		if i > 0 && size > max {
			break
		}
		i++
	}
	out := s.q[:i:i]
	for _, e := range out {
		if !e.Raw {
			s.n--
		}
	}
	if i == len(s.q) {
		s.q = nil
	} else {
		s.q = append([]Entry(nil), s.q[i:]...)
	}
	return out
}

// Close ends the session: queued entries still go out, then a close
// packet (polling) or the close of the websocket. Only the first call
// counts.
func (s *Session) Close(reason string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed, s.reason = true, reason
	if s.hb != nil {
		s.hb.Stop()
	}
	if s.mode == polling {
		s.q = append(s.q, Entry{Data: closePacket, Raw: true})
	}
	s.kickLocked()
	s.mu.Unlock()
	s.srv.forget(s)
	s.closedOnce.Do(func() {
		s.releaseSlot()
		s.rcv.Closed(reason)
	})
}

// Closed reports whether Close was called.
func (s *Session) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// startHeartbeat arms the first server ping.
func (s *Session) startHeartbeat() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.hb = time.AfterFunc(s.srv.cfg.PingInterval, s.heartbeat)
	}
}

// heartbeat sends a ping, or closes a session whose pong is overdue.
func (s *Session) heartbeat() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if s.awaitPong {
		s.mu.Unlock()
		s.Close("ping timeout")
		return
	}
	s.awaitPong = true
	s.pushLocked(Entry{Data: pingPacket, Raw: true})
	s.hb.Reset(s.srv.cfg.PingTimeout)
	s.mu.Unlock()
}

// packet handles one packet from the client.
func (s *Session) packet(p Packet) {
	switch p.Type {
	case Message:
		if p.Binary {
			s.Close("parse error")
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
		s.Close("forced close")
	}
	// Ping (v3 clients), Upgrade and Noop outside an upgrade: nothing to do.
}

// poll answers a long-poll GET: what is queued, or, when nothing is, the
// first entry to arrive (a ping comes within pingInterval).
func (s *Session) poll(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.polled || s.mode != polling {
		overlap := s.polled
		s.mu.Unlock()
		if overlap {
			// Engine.IO: a second concurrent GET is a protocol error.
			s.Close("transport error")
		}
		httpError(w, codeBadRequest, "Bad request")
		return
	}
	s.polled = true
	for len(s.q) == 0 && !s.closed && s.mode == polling {
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
	var batch []Entry
	if s.mode == polling {
		batch = s.takeLocked(s.srv.cfg.MaxPayload)
	}
	s.mu.Unlock()
	body := s.srv.appendPayload(nil, batch)
	if len(body) == 0 {
		body = noopPacket // upgraded meanwhile: release the poll
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(s.srv.cfg.WriteTimeout))
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(body)
	s.mu.Lock()
	s.polled = false
	if len(s.q) > 0 {
		s.kickLocked() // a wake consumed before this GET parked is not lost
	}
	s.mu.Unlock()
	if err != nil {
		s.Close("transport error")
		return
	}
	s.srv.sent(batch)
}

// post reads a payload POST and hands its packets over in order.
func (s *Session) post(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.posting || s.mode != polling {
		overlap := s.posting
		s.mu.Unlock()
		if overlap {
			s.Close("transport error")
		}
		httpError(w, codeBadRequest, "Bad request")
		return
	}
	s.posting = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.posting = false
		s.mu.Unlock()
	}()
	limit := s.srv.cfg.MaxPayload
	body, err := readBody(r, limit)
	if err != nil {
		// maxPayload was announced in the handshake; a client that sends
		// more is broken or hostile.
		s.Close("transport error")
		httpError(w, codeBadRequest, err.Error())
		return
	}
	ps, err := DecodePayload(body, maxPacketsPerPost)
	if err != nil {
		s.Close("parse error")
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
// 3probe, the parked GET released with a noop, then 5, after which the
// websocket carries everything. It then reads the websocket until it ends.
func (s *Session) upgrade(conn *websocket.Conn) {
	ok := s.probe(conn)
	s.mu.Lock()
	s.upgrading = false
	if !ok || s.closed {
		s.mu.Unlock()
		_ = conn.CloseNow()
		return
	}
	s.mode, s.ws = wsOnly, conn
	if len(s.q) > 0 || s.closed {
		s.kickLocked()
	}
	select { // a GET parked anyway gets a noop
	case s.wake <- struct{}{}:
	default:
	}
	s.mu.Unlock()
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
	s.q = append(s.q, Entry{Data: noopPacket, Raw: true})
	s.kickLocked()
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
			s.Close("transport close")
			return
		}
		if typ == websocket.MessageBinary {
			s.packet(Packet{Type: Message, Data: b, Binary: true})
			continue
		}
		p, err := DecodePacket(b)
		if err != nil {
			s.Close("parse error")
			return
		}
		s.packet(p)
	}
}

// drain is the websocket write side while it runs (one at a time): it
// writes queued entries, one packet per message, until the queue is empty;
// after Close it ends the connection.
func (s *Session) drain(conn *websocket.Conn) {
	var buf []byte
	for {
		s.mu.Lock()
		if len(s.q) == 0 {
			closed := s.closed
			if !closed {
				s.draining = false
			}
			s.mu.Unlock()
			if closed {
				_ = conn.Close(websocket.StatusNormalClosure, "")
			}
			return
		}
		batch := s.takeLocked(1 << 30)
		s.mu.Unlock()
		for _, e := range batch {
			buf = s.srv.appendEntry(buf[:0], e)
			ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.WriteTimeout)
			err := conn.Write(ctx, websocket.MessageText, buf)
			cancel()
			if err != nil {
				s.srv.log.LogAttrs(context.Background(), slog.LevelDebug, "engine.io write failed", slog.String(logging.KeyConn, s.id), logging.Err(err))
				s.Close("transport error")
				_ = conn.CloseNow()
				return
			}
		}
		s.srv.sent(batch)
	}
}
