// Package sse is the Server-Sent Events transport of a session
// (PROTOCOL.md "Other transports"): GET /sse streams the session's frames,
// one event each: "id: <seq>" for sequenced frames, "event: <the frame's
// event>", "data: <the frame's JSON, byte for byte>". A comment line goes
// out at least every Heartbeat (15 s) so proxies and the client see the
// stream alive. Clients send nothing on the stream; their messages (ack,
// seen, process) go over the order API's HTTP twins.
//
// Goroutines per stream: one, which reads the connection only to notice
// the client leaving. The stream takes the connection over from net/http
// (as a WebSocket upgrade does), so no handler goroutine waits and none of
// net/http's buffers stay with it; the response has no length and ends with
// the connection (Connection: close). The write side is the session's
// drainer, which exists only while frames wait; the heartbeat is a
// time.AfterFunc timer. Writes of the drainer and of the heartbeat are
// serialised by a mutex.
//
// The session's close reasons end the stream after a comment naming the
// reason; the client resumes with Last-Event-ID (EventSource does so by
// itself).
package sse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"orderpush/gateway/internal/session"
	"orderpush/gateway/internal/session/sendq"
	"orderpush/pkg/wire"
)

// Defaults of Config.
const (
	DefaultHeartbeat    = 15 * time.Second
	DefaultWriteTimeout = 10 * time.Second
)

// Config tunes a stream. Zero values mean the defaults.
type Config struct {
	Heartbeat    time.Duration // comment line at least this often
	WriteTimeout time.Duration // one write (a batch, a heartbeat) taking longer ends the stream
}

// Stream is one event stream under a session.
type Stream struct {
	sess *session.Session
	cfg  Config
	conn net.Conn

	mu    sync.Mutex  // serialises writes to conn
	ended bool        // guarded by mu: conn is not written any more
	beat  *time.Timer // guarded by mu
}

// Take takes the request's connection over and sends the response head
// with w's headers (set by the caller: CORS) and the stream's own. On error
// the connection is closed; the caller answers nothing more.
func Take(w http.ResponseWriter, sess *session.Session, cfg Config) (*Stream, error) {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	h := w.Header().Clone()
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, fmt.Errorf("sse: take over the connection: %w", err)
	}
	// http.Hijacker does not promise a connection without deadlines.
	_ = conn.SetDeadline(time.Time{})
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	// Proxy-friendly: nothing may cache, buffer or compress the stream.
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Connection", "close")
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(&head)
	// retry: how long EventSource waits before it reconnects on its own.
	head.WriteString("\r\nretry: 1000\n\n")
	st := &Stream{sess: sess, cfg: cfg, conn: conn}
	st.mu.Lock()
	if err := st.writeLocked(head.Bytes()); err != nil {
		st.mu.Unlock()
		_ = conn.Close()
		return nil, fmt.Errorf("sse: response head: %w", err)
	}
	st.beat = time.AfterFunc(cfg.Heartbeat, st.heartbeat)
	st.mu.Unlock()
	return st, nil
}

// Start attaches the session (which writes what was queued at admission,
// and the replay when not nil) and returns. The stream goes on until the
// session closes it, a write fails or the client goes away; then the
// session has ended and ended is called, on the stream's goroutine.
func (st *Stream) Start(ctx context.Context, replay func(context.Context) error, ended func()) {
	st.sess.Start(ctx, st, replay)
	go st.run(ended)
}

// run reads the connection until it ends: the client went away (nothing
// else is expected from it), or the session closed it.
func (st *Stream) run(ended func()) {
	buf := make([]byte, 64)
	for {
		if _, err := st.conn.Read(buf); err != nil {
			break
		}
	}
	st.sess.Abort() // the client is gone; no-op when the session ended it
	st.sess.End()
	st.mu.Lock()
	st.ended = true
	st.beat.Stop()
	st.mu.Unlock()
	ended()
}

// CloseNow ends the stream without a goodbye.
func (st *Stream) CloseNow() { _ = st.conn.Close() }

// WriteClose ends the stream with a comment naming the reason (a client
// reconnects with Last-Event-ID; after Policy it needs a new token).
func (st *Stream) WriteClose(r session.Reason, text string) error {
	defer st.CloseNow()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return nil
	}
	line := ": close " + r.String()
	if text != "" {
		line += " " + text
	}
	return st.writeLocked([]byte(line + "\n\n"))
}

// WriteFrames writes each frame as one event and flushes once.
func (st *Stream) WriteFrames(batch []sendq.Entry) (int, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return 0, errors.New("stream ended")
	}
	var b bytes.Buffer
	size := 0
	for _, e := range batch {
		size += len(e.Data) + 64 // id, event and data prefixes, usually
	}
	b.Grow(size)
	for _, e := range batch {
		appendEvent(&b, e)
	}
	if err := st.writeLocked(b.Bytes()); err != nil {
		return 0, err
	}
	// The stream is alive: the next heartbeat is due a full period later.
	st.beat.Reset(st.cfg.Heartbeat)
	return len(batch), nil
}

// appendEvent encodes one frame as an event. The frame's bytes go out
// unchanged; a frame with line breaks (a publisher's pretty-printed JSON)
// takes one data line per line, which EventSource joins back with '\n'.
// The id and event come from the entry's head, decoded once for every
// stream; only a frame without one is decoded here.
func appendEvent(b *bytes.Buffer, e sendq.Entry) {
	var h wire.Head
	if e.Head != nil {
		h = wire.Head{Event: e.Head.Event, Seq: e.Head.Seq}
	} else {
		h, _ = wire.ParseHead(e.Data) // a zero head on error: data lines only
	}
	if h.Seq > 0 {
		b.WriteString("id: ")
		var n [20]byte
		b.Write(strconv.AppendUint(n[:0], h.Seq, 10))
		b.WriteByte('\n')
	}
	if validEventName(h.Event) {
		b.WriteString("event: ")
		b.WriteString(h.Event)
		b.WriteByte('\n')
	}
	frame := bytes.TrimRight(e.Data, "\r\n")
	for {
		line, rest, more := bytes.Cut(frame, []byte("\n"))
		b.WriteString("data: ")
		b.Write(bytes.TrimSuffix(line, []byte("\r")))
		b.WriteByte('\n')
		if !more {
			break
		}
		frame = rest
	}
	b.WriteByte('\n')
}

// validEventName keeps an event name from breaking the stream's framing.
func validEventName(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c == 0x7f {
			return false
		}
	}
	return true
}

// heartbeat writes a comment line; a stream that cannot take one is gone.
func (st *Stream) heartbeat() {
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		return
	}
	err := st.writeLocked([]byte(": hb\n\n"))
	if err == nil {
		st.beat.Reset(st.cfg.Heartbeat)
	}
	st.mu.Unlock()
	if err != nil {
		st.sess.DeadPeer()
	}
}

// writeLocked writes within the write timeout; mu is held.
func (st *Stream) writeLocked(p []byte) error {
	_ = st.conn.SetWriteDeadline(time.Now().Add(st.cfg.WriteTimeout))
	_, err := st.conn.Write(p)
	return err
}
