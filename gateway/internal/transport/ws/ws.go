// Package ws is the native WebSocket transport of a session (PROTOCOL.md
// "Merchant socket"): it upgrades the request, writes the session's frames
// as WebSocket text messages (several per message with ?batch=1), reads
// client messages and hands them to the session, pings the peer, and maps
// the session's close reasons to close codes. Everything else (queue,
// limits, receipts, expiry) is the session's (package session).
//
// Goroutines per connection: one, reading (Run's caller). An idle
// connection has no writer goroutine and no write buffer: the session's
// drainer exists only while frames wait. Keepalive pings are a
// time.AfterFunc timer, which costs no goroutine until it fires.
//
// Who owns the write side: the session's drainer (one at a time). It
// writes every data frame and the close frame, in queue order. The library
// writes control frames itself (our keepalive ping, its pong and its close
// reply); with a connection accepted through Accept those go through the
// same serialised path (see accept.go), never between a frame's bytes.
//
// A Conn is safe for concurrent use; Run is called once.
package ws

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/coder/websocket"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/session"
	"orderpush/gateway/internal/session/sendq"
	"orderpush/pkg/logging"
	"orderpush/pkg/wire"
)

// Defaults of Config.
const (
	DefaultPingInterval = 25 * time.Second
	DefaultPingTimeout  = 10 * time.Second
	DefaultWriteTimeout = 10 * time.Second
)

// Config tunes one connection. Zero values mean the defaults.
type Config struct {
	Batch        bool          // ?batch=1: join queued frames with '\n' in one message
	PingInterval time.Duration // PING_INTERVAL: keepalive ping period
	PingTimeout  time.Duration // PING_TIMEOUT: a ping unanswered this long ends the connection; negative: never
	WriteTimeout time.Duration // a write backed up this long makes the peer a slow consumer (1013); no byte taken for 2 more: dropped
}

// Conn is one WebSocket under a session.
type Conn struct {
	// Static after Accept.
	sess *session.Session
	cfg  Config
	m    *metrics.Metrics
	log  *slog.Logger
	conn *websocket.Conn
	out  *Output // every write of the library goes through it (accept.go)

	timerMu sync.Mutex
	ping    *time.Timer // guarded by timerMu
	stopped bool        // guarded by timerMu: Run ended; the timer stays stopped
}

func (c *Conn) defaults() {
	if c.cfg.PingInterval <= 0 {
		c.cfg.PingInterval = DefaultPingInterval
	}
	if c.cfg.PingTimeout == 0 {
		c.cfg.PingTimeout = DefaultPingTimeout
	}
	if c.cfg.WriteTimeout <= 0 {
		c.cfg.WriteTimeout = DefaultWriteTimeout
	}
}

// Run serves the connection until it ends: it attaches the session (which
// starts writing what was queued at admission, and the replay when not
// nil), pings, and reads client messages itself. It returns when the
// connection is over and the session has ended.
func (c *Conn) Run(ctx context.Context, replay func(context.Context) error) {
	// A message over the limit makes coder/websocket close with 1009.
	c.conn.SetReadLimit(wire.MaxFrameSize)
	c.sess.Start(ctx, c, replay)
	c.startPing()
	c.readLoop()
	c.stopPing()
	c.sess.End()
}

// readLoop reads client messages until the connection ends. It keeps
// reading so control frames (pings, pongs, close) are handled. Reads get no
// context: a cancelled read kills the connection without a close frame, and
// a read with a cancellable context registers a callback on it for as long
// as it waits. Once the session is closing, messages are read and dropped
// (a flood after its 1008 costs nothing more).
func (c *Conn) readLoop() {
	for {
		_, data, err := c.conn.Read(context.Background())
		if err != nil {
			if r, _ := c.sess.Closing(); websocket.CloseStatus(err) == -1 && r == session.None {
				c.log.LogAttrs(context.Background(), slog.LevelDebug, "read ended", slog.String(logging.KeyConn, c.sess.ID()), logging.Err(err))
			}
			return
		}
		if r, _ := c.sess.Closing(); r != session.None {
			continue
		}
		c.sess.Handle(data)
	}
}

// CloseNow drops the connection without a close handshake.
func (c *Conn) CloseNow() { _ = c.conn.CloseNow() }

// WriteClose writes the close frame for r and waits for the handshake
// (bounded by the library: 5 s to write, 5 s for the peer's answer).
func (c *Conn) WriteClose(r session.Reason, text string) error {
	err := c.conn.Close(closeCode(r), text)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// closeCode is PROTOCOL.md's close code for a reason.
func closeCode(r session.Reason) websocket.StatusCode {
	switch r {
	case session.GoingAway:
		return websocket.StatusGoingAway
	case session.Policy:
		return websocket.StatusPolicyViolation
	case session.TooBig:
		return websocket.StatusMessageTooBig
	case session.TryAgainLater:
		return websocket.StatusTryAgainLater
	}
	return websocket.StatusNormalClosure
}

// startPing arms the keepalive.
func (c *Conn) startPing() {
	c.timerMu.Lock()
	defer c.timerMu.Unlock()
	c.ping = time.AfterFunc(c.cfg.PingInterval, c.keepalive)
}

func (c *Conn) stopPing() {
	c.timerMu.Lock()
	defer c.timerMu.Unlock()
	c.stopped = true
	c.ping.Stop()
}

// keepalive sends one ping and waits for the pong (the reader handles it),
// then arms the next one. It runs on the timer's own goroutine, which lives
// only while a ping is in flight. A peer that does not answer within
// PING_TIMEOUT is dead (it vanished, or stopped reading): coder/websocket's
// Ping returns an error then but does not close the connection (Conn.Ping),
// so the session is aborted here, which ends the reader and takes the
// connection out of presence at once.
//
// A peer whose writes are backed up (a network write in flight) is not
// pinged and not judged by a ping: it is a slow consumer, not a dead peer.
// Its ping would queue behind the backed-up bytes, and coder/websocket
// drops the connection when a control frame is not written within 5 s,
// which would cut a data frame and lose the slow consumer's 1013; and a
// pong cannot come back before the peer has read everything in front of
// the ping. Such a peer is judged by its writes instead: the queue
// overflows (1013) or, if it takes no byte for WriteTimeout, the write
// fails and the connection is dropped (Output.writeLocked).
func (c *Conn) keepalive() {
	if r, _ := c.sess.Closing(); r != session.None {
		return
	}
	if c.backedUp() {
		c.rearm()
		return
	}
	wait := c.cfg.PingTimeout
	if wait < 0 {
		wait = c.cfg.PingInterval // PING_TIMEOUT off: pings only keep proxies from timing out
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	err := c.conn.Ping(ctx)
	cancel()
	if err != nil && c.cfg.PingTimeout > 0 && !c.backedUp() {
		if r, _ := c.sess.Closing(); r == session.None {
			c.sess.DeadPeer()
		}
		return
	}
	c.rearm()
}

// rearm schedules the next keepalive unless Run has ended.
func (c *Conn) rearm() {
	c.timerMu.Lock()
	if !c.stopped {
		c.ping.Reset(c.cfg.PingInterval)
	}
	c.timerMu.Unlock()
}

// backedUp reports whether a network write to the peer is in flight (see
// keepalive).
func (c *Conn) backedUp() bool { return c.out.busy.Load() > 0 }

// WriteFrames writes a batch: in batch mode as one message of
// '\n'-separated frames, else one message per frame. It stops early once
// the session overflowed, so a slow consumer gets its close frame as soon
// as possible. The messages are gathered and reach the network in one
// write.
func (c *Conn) WriteFrames(batch []sendq.Entry) (int, error) {
	if len(batch) == 0 {
		return 0, nil
	}
	// The library's writes only append to the gathered buffer; the
	// network write is bounded by its own deadline in End.
	c.out.Begin()
	written, msgs, err := c.writeMessages(context.Background(), batch)
	if eerr := c.out.End(); err == nil {
		err = eerr
	}
	if err != nil {
		// Gathered frames did not reach the network.
		written = 0
	}
	if err != nil {
		return written, err
	}
	c.m.WebSocketMessages.Add(float64(msgs))
	return written, nil
}

// writeMessages hands the batch to the library; it reports how many frames
// and messages it wrote.
func (c *Conn) writeMessages(ctx context.Context, batch []sendq.Entry) (frames, msgs int, err error) {
	if c.cfg.Batch && len(batch) > 1 {
		buf := getBuf()
		defer putBuf(buf)
		for i, e := range batch {
			if i > 0 {
				*buf = append(*buf, '\n')
			}
			*buf = append(*buf, e.Data...)
		}
		if err := c.conn.Write(ctx, websocket.MessageText, *buf); err != nil {
			return 0, 0, err
		}
		return len(batch), 1, nil
	}
	for i, e := range batch {
		if c.sess.Overflowed() {
			return i, i, nil
		}
		if err := c.conn.Write(ctx, websocket.MessageText, e.Data); err != nil {
			return i, i, err
		}
	}
	return len(batch), len(batch), nil
}
