// Package sse is the Server-Sent Events transport of a session
// (PROTOCOL.md "Other transports"): GET /sse streams the session's frames,
// one event each: "id: <seq>" for sequenced frames, "event: <the frame's
// event>", "data: <the frame's JSON, byte for byte>". A comment line goes
// out at least every Heartbeat (15 s) so proxies and the client see the
// stream alive. Clients send nothing on the stream; their messages (ack,
// seen, process) go over the order API's HTTP twins.
//
// Goroutines per stream: one, the HTTP handler's, which waits for the end
// of the stream (net/http needs it alive while the response is written).
// The write side is the session's drainer, which exists only while frames
// wait; the heartbeat is a time.AfterFunc timer. Writes of the drainer and
// of the heartbeat are serialised by a mutex.
//
// The session's close reasons end the stream after a comment naming the
// reason; the client resumes with Last-Event-ID (EventSource does so by
// itself).
package sse

import (
	"bytes"
	"context"
	"errors"
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
	w    http.ResponseWriter
	rc   *http.ResponseController
	done chan struct{} // closed by end: the handler returns

	mu      sync.Mutex  // serialises writes to w
	ended   bool        // guarded by mu: w is not written any more
	beat    *time.Timer // guarded by mu
	endOnce sync.Once
}

// New prepares a stream on w; Run sends the headers.
func New(w http.ResponseWriter, sess *session.Session, cfg Config) *Stream {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	return &Stream{sess: sess, cfg: cfg, w: w, rc: http.NewResponseController(w), done: make(chan struct{})}
}

// Run sends the headers, attaches the session (which writes what was
// queued at admission, and the replay when not nil) and serves until the
// stream ends: the session closed it, a write failed, or the client went
// away (ctx is the request's context). It returns when the session has
// ended; after that w is not touched.
func (st *Stream) Run(ctx, base context.Context, replay func(context.Context) error) {
	h := st.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	// Proxy-friendly: nothing may cache, buffer or compress the stream.
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	st.w.WriteHeader(http.StatusOK)
	st.mu.Lock()
	// retry: how long EventSource waits before it reconnects on its own.
	err := st.writeLocked([]byte("retry: 1000\n\n"))
	st.beat = time.AfterFunc(st.cfg.Heartbeat, st.heartbeat)
	st.mu.Unlock()
	st.sess.Start(base, st, replay)
	if err != nil {
		st.sess.Abort()
	}
	select {
	case <-st.done:
	case <-ctx.Done():
		st.sess.Abort() // the client is gone
	}
	st.sess.End()
	st.mu.Lock()
	st.ended = true
	st.beat.Stop()
	st.mu.Unlock()
}

// end lets the handler return.
func (st *Stream) end() { st.endOnce.Do(func() { close(st.done) }) }

// CloseNow ends the stream without a goodbye.
func (st *Stream) CloseNow() { st.end() }

// WriteClose ends the stream with a comment naming the reason (a client
// reconnects with Last-Event-ID; after Policy it needs a new token).
func (st *Stream) WriteClose(r session.Reason, text string) error {
	defer st.end()
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
	for _, e := range batch {
		appendEvent(&b, e.Data)
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
func appendEvent(b *bytes.Buffer, frame []byte) {
	h, err := wire.ParseHead(frame)
	if err == nil && h.Seq > 0 {
		b.WriteString("id: ")
		b.WriteString(strconv.FormatUint(h.Seq, 10))
		b.WriteByte('\n')
	}
	if err == nil && validEventName(h.Event) {
		b.WriteString("event: ")
		b.WriteString(h.Event)
		b.WriteByte('\n')
	}
	for _, line := range bytes.Split(bytes.TrimRight(frame, "\r\n"), []byte("\n")) {
		b.WriteString("data: ")
		b.Write(bytes.TrimSuffix(line, []byte("\r")))
		b.WriteByte('\n')
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

// writeLocked writes and flushes within the write timeout; mu is held.
func (st *Stream) writeLocked(p []byte) error {
	_ = st.rc.SetWriteDeadline(time.Now().Add(st.cfg.WriteTimeout))
	if _, err := st.w.Write(p); err != nil {
		return err
	}
	return st.rc.Flush()
}
