package ws

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/session"
)

// Buffer sizes of an accepted socket, kept for its life. net/http hands a
// hijacked connection a 4 KiB reader and a 4 KiB writer: 8 KiB per idle
// socket.
const (
	// readBufSize holds a client frame's header with the usual ack or seen
	// payload, so one of those costs one read. A bufio.Reader reads a
	// payload longer than its buffer straight into the caller's slice, so
	// a large message costs no copy through it either.
	readBufSize = 128
	// writeBufSize holds the control frames written outside a gather (our
	// pings, close frames with their reason) whole, so each reaches the
	// network in one write; a longer pong is written in pieces, still in
	// order. Data frames are gathered by Output whatever this size is.
	writeBufSize = 64
	// maxPooled bounds the buffers kept for reuse.
	maxPooled = 64 << 10
	// maxStalls bounds one network write to this many write timeouts
	// (see Output).
	maxStalls = 10
	// maxIdle is how many timeouts after a stall a peer may take no byte
	// at all (a loaded machine may not schedule a live reader for a while).
	maxIdle = 2
)

// bufPool holds byte buffers only while a write is in flight (gathering,
// batch joining). A cache, not state: any buffer is as good as another.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > maxPooled {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// Accept upgrades the request for sess like websocket.Accept, with small
// buffers and the connection's output under the library's writer: data
// frames written by the session's drainer are gathered and reach the
// network in one write per batch. On failure Accept has written the HTTP
// response.
func Accept(w http.ResponseWriter, r *http.Request, sess *session.Session, cfg Config, opts *websocket.AcceptOptions, log *slog.Logger, m *metrics.Metrics) (*Conn, error) {
	c := &Conn{sess: sess, cfg: cfg, m: m, log: log}
	c.defaults()
	out := &Output{timeout: c.cfg.WriteTimeout, stalled: sess.Overflow}
	conn, err := accept(&hijackWriter{ResponseWriter: w, out: out}, r, opts)
	if err != nil {
		return nil, err
	}
	c.conn, c.out = conn, out
	return c, nil
}

// AcceptGathering is websocket.Accept with the small buffers and the
// Output of Accept, for a WebSocket that is not a session's Conn
// (Engine.IO's): the messages written between the Output's Begin and End
// reach the network in one write. Network writes are bounded by
// writeTimeout; stalled, when not nil, is called when one hit it and goes
// on (see Output). On failure it has written the HTTP response.
func AcceptGathering(w http.ResponseWriter, r *http.Request, opts *websocket.AcceptOptions, writeTimeout time.Duration, stalled func()) (*websocket.Conn, *Output, error) {
	out := &Output{timeout: writeTimeout, stalled: stalled}
	conn, err := accept(&hijackWriter{ResponseWriter: w, out: out}, r, opts)
	if err != nil {
		return nil, nil, err
	}
	return conn, out, nil
}

func accept(h *hijackWriter, r *http.Request, opts *websocket.AcceptOptions) (*websocket.Conn, error) {
	conn, err := websocket.Accept(h, r, opts)
	if err != nil {
		return nil, err
	}
	// coder/websocket puts every hijacked reader over a MultiReader of the
	// bytes buffered at the hijack and the connection (golang/go#32314),
	// kept for the socket's life and a call deeper on every read. With
	// nothing buffered it is the bare connection, and nothing has been read
	// through it yet.
	if h.br != nil {
		h.br.Reset(h.netConn)
	}
	return conn, nil
}

// hijackWriter is the ResponseWriter websocket.Accept sees: its Hijack
// replaces net/http's buffers.
type hijackWriter struct {
	http.ResponseWriter
	out *Output // its conn is set by Hijack

	// Set by Hijack when the client sent nothing after its request: the
	// reader handed to the library and the connection under it.
	br      *bufio.Reader
	netConn net.Conn
}

func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("hijack: %T is not an http.Hijacker", h.ResponseWriter)
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	// Bytes the client sent after its request (normally none) stay in
	// front of the connection; the library reads them from the buffer.
	var br *bufio.Reader
	if n := brw.Reader.Buffered(); n > 0 {
		pending, _ := brw.Reader.Peek(n)
		pending = bytes.Clone(pending)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(pending), conn), max(readBufSize, n))
		if _, err := br.Peek(n); err != nil {
			_ = conn.Close()
			return nil, nil, fmt.Errorf("hijack: buffered bytes: %w", err)
		}
	} else {
		br = bufio.NewReaderSize(conn, readBufSize)
		h.br, h.netConn = br, conn
	}
	h.out.conn = conn
	return conn, bufio.NewReadWriter(br, bufio.NewWriterSize(h.out, writeBufSize)), nil
}

// Output is the io.Writer under the library's bufio.Writer. Outside a
// gather it writes through; between Begin and End (the drainer writing a
// batch) it appends to a pooled buffer that end writes in one call. Every
// network write happens under mu, so bytes the library writes while a
// gather is open (a pong) follow the gathered frames, and nothing the
// library writes can land between two of them.
//
// Network writes are bounded by a write deadline that is moved forward only
// when less than half of timeout is left, so it lies between timeout/2 and
// timeout ahead of every write, and a steady stream of writes does not pay
// two deadline updates (runtime timer changes) per write.
//
// A write that hits the deadline is backed up: the peer is a slow consumer
// (stalled, the session's Overflow, ends it with 1013), not a dead peer,
// and the write goes on with a new deadline instead of being cut (a cut
// write breaks the frame on the wire, and no close frame could follow it).
// It goes on while the peer takes bytes: a peer that takes none in
// maxIdle further timeouts is gone, and so is one still not done after
// maxStalls timeouts (a byte now and then must not hold the write side
// forever); the write fails then and the connection is dropped.
type Output struct {
	conn    net.Conn
	timeout time.Duration
	stalled func() // a write hit the deadline; called with mu held

	// busy is set while a network write is in flight (or a gather is
	// open): the keepalive does not ping then (see Conn.keepalive).
	busy atomic.Int32

	mu        sync.Mutex
	gathering bool      // guarded by mu
	buf       *[]byte   // guarded by mu: from bufPool while gathering
	deadline  time.Time // guarded by mu: the connection's write deadline
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.gathering {
		*o.buf = append(*o.buf, p...)
		return len(p), nil
	}
	return o.writeLocked(p)
}

// writeLocked writes p to the network; mu is held. It fails when the
// peer takes nothing in maxIdle timeouts after a stall, or has not taken p after
// maxStalls timeouts (see Output).
func (o *Output) writeLocked(p []byte) (int, error) {
	o.busy.Add(1)
	defer o.busy.Add(-1)
	written, idle := 0, 0
	for round := 1; ; round++ {
		if now := time.Now(); o.deadline.Sub(now) < o.timeout/2 {
			o.deadline = now.Add(o.timeout)
			if err := o.conn.SetWriteDeadline(o.deadline); err != nil {
				return written, err
			}
		}
		n, err := o.conn.Write(p[written:])
		written += n
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return written, err
		}
		if round > 1 && n == 0 {
			idle++
		}
		if idle == maxIdle || round == maxStalls {
			return written, err // gone, or too slow to wait for
		}
		if o.stalled != nil {
			o.stalled()
		}
		// Force a fresh deadline for the rest.
		o.deadline = time.Time{}
	}
}

// Begin opens a gather; only the writer of data (the drainer) calls it,
// and calls End before the next Begin.
func (o *Output) Begin() {
	o.busy.Add(1)
	o.mu.Lock()
	o.gathering = true
	o.buf = getBuf()
	o.mu.Unlock()
}

// End closes the gather and writes it, within the write deadline.
func (o *Output) End() error {
	defer o.busy.Add(-1)
	o.mu.Lock()
	defer o.mu.Unlock()
	buf := o.buf
	o.gathering, o.buf = false, nil
	defer putBuf(buf)
	if len(*buf) == 0 {
		return nil
	}
	_, err := o.writeLocked(*buf)
	return err
}
