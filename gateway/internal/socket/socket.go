// Package socket is one merchant WebSocket on the gateway: its bounded send
// queue and the write side, the read loop for client frames, keepalive
// pings, token expiry and the close codes of PROTOCOL.md ("Merchant
// socket").
//
// Goroutines per socket: one, reading (Run's caller). An idle socket has no
// writer goroutine and no write buffer. The push that makes the queue
// non-empty starts a drainer goroutine (sendq's wake); it writes what is
// queued and exits when the queue is empty.
//
// Who owns the write side: the drainer, and only one exists at any moment
// (sendq.Queue guarantees it). It writes every data frame and the close
// frame, in queue order, and is the one that ends the connection. The
// library writes control frames itself (our keepalive ping, its pong and
// its close reply); with a socket accepted through Accept those go through
// the same serialised path (see out.go), never between a frame's bytes.
//
// Timers: keepalive pings and token expiry are time.AfterFunc timers, which
// cost no goroutine until they fire.
//
// A Socket is safe for concurrent use; Run is called once.
package socket

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/sendq"
	"orderpush/pkg/logging"
)

// Defaults of Config.
const (
	DefaultQueueSize    = 256
	DefaultPingInterval = 25 * time.Second
	DefaultPingTimeout  = 15 * time.Second
	DefaultWriteTimeout = 10 * time.Second
)

// Config tunes one socket. Zero values mean the defaults.
type Config struct {
	QueueSize    int           // SEND_QUEUE_SIZE: frames queued before close 1013
	Batch        bool          // ?batch=1: join queued frames with '\n' in one message
	PingInterval time.Duration // keepalive ping period
	PingTimeout  time.Duration // a ping unanswered this long closes the socket
	WriteTimeout time.Duration // one write (or batch) taking longer closes it
	Expiry       time.Time     // token exp: closed with 1008 then; zero: never
}

// Processor forwards a process frame to the order API with the socket's
// token.
type Processor interface {
	Process(ctx context.Context, orderNo, bearer string) error
}

// Socket is one merchant connection.
type Socket struct {
	// Static after New.
	id       string
	merchant string
	bearer   string // the socket's token, for process forwarding; never logged
	cfg      Config
	q        *sendq.Queue
	proc     Processor // nil: process frames get an error
	// log is shared by every socket: the conn and merchant attributes are
	// added per record (a With per socket would keep ~300 B per socket).
	log *slog.Logger
	m   *metrics.Metrics

	conn atomic.Pointer[websocket.Conn] // set by Run
	out  *output                        // set by Accept; nil: the library writes to the network itself

	closeOnce sync.Once
	closed    atomic.Bool // set by Close after code and reason
	code      websocket.StatusCode
	reason    string
	done      chan struct{} // closed by the drainer that ended the connection

	timerMu sync.Mutex
	ping    *time.Timer // guarded by timerMu
	expiry  *time.Timer // guarded by timerMu
	stopped bool        // guarded by timerMu: Run ended; timers stay stopped
}

// New returns a socket that is not running yet; frames may be queued.
func New(id, merchant, bearer string, cfg Config, proc Processor, log *slog.Logger, m *metrics.Metrics) *Socket {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = DefaultPingTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	s := &Socket{
		id: id, merchant: merchant, bearer: bearer, cfg: cfg, proc: proc,
		log: log, m: m,
		done: make(chan struct{}),
	}
	s.q = sendq.New(cfg.QueueSize, s.startDrain)
	return s
}

// ID is the connection id (hello.connId).
func (s *Socket) ID() string { return s.id }

// Merchant is the merchant id.
func (s *Socket) Merchant() string { return s.merchant }

// TrySend queues e without blocking; false when the queue is full or closed.
func (s *Socket) TrySend(e sendq.Entry) bool { return s.q.TryPush(e) }

// Send queues e, waiting for room.
func (s *Socket) Send(ctx context.Context, e sendq.Entry) error { return s.q.Push(ctx, e) }

// Overflow closes a socket that cannot keep up with 1013.
func (s *Socket) Overflow() {
	if s.Close(websocket.StatusTryAgainLater, "slow consumer") {
		s.m.SlowConsumerCloses.Inc()
		s.logf(slog.LevelInfo, "closing slow consumer", slog.Int("queue", s.q.Limit()))
	}
}

// Close asks the drainer to close the connection with code after the frame
// it is writing; only the first call counts, and it reports whether it was
// the first. It never blocks.
func (s *Socket) Close(code websocket.StatusCode, reason string) bool {
	first := false
	s.closeOnce.Do(func() {
		s.code, s.reason = code, reason
		s.closed.Store(true)
		first = true
	})
	if first {
		s.q.Wake()
	}
	return first
}

// CloseCode is the code Close was called with, or 0.
func (s *Socket) CloseCode() websocket.StatusCode {
	if !s.closed.Load() {
		return 0
	}
	return s.code
}

func (s *Socket) closing() bool { return s.closed.Load() }

// logf logs with the socket's attributes.
func (s *Socket) logf(level slog.Level, msg string, attrs ...slog.Attr) {
	if !s.log.Enabled(context.Background(), level) {
		return
	}
	attrs = append(attrs, slog.String(logging.KeyConn, s.id), slog.String(logging.KeyMerchant, s.merchant))
	s.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// Run serves the connection until it ends: it starts the first drainer
// (for what was queued before the upgrade, the hello) and the timers and,
// when replay is not nil, the replay, and reads client frames itself. ctx
// bounds calls made for the socket (the order API); ending it does not
// close the connection, Close does.
func (s *Socket) Run(ctx context.Context, conn *websocket.Conn, replay func(context.Context) error) {
	s.conn.Store(conn)
	// A frame over the limit makes coder/websocket close with 1009.
	conn.SetReadLimit(maxClientFrame)
	// rctx ends when the socket does: a replay still fetching and a
	// process call in flight give up.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go s.drain() // the queue was created active: this is its first drainer
	s.startTimers()
	defer s.stopTimers()
	var wg sync.WaitGroup
	if replay != nil {
		wg.Go(func() {
			if err := replay(rctx); err != nil && !s.closing() && rctx.Err() == nil {
				s.logf(slog.LevelWarn, "replay failed", logging.Err(err))
				s.Close(websocket.StatusTryAgainLater, "replay failed")
			}
		})
	}
	s.readLoop(rctx, conn)
	s.Close(websocket.StatusNormalClosure, "")
	cancel()
	wg.Wait()
	<-s.done
}

// Abort drops the connection without a close handshake: the end of a drain
// for peers that do not answer.
func (s *Socket) Abort() {
	s.Close(websocket.StatusGoingAway, "")
	if c := s.conn.Load(); c != nil {
		_ = c.CloseNow()
	}
}

// startDrain is the queue's wake: a drainer for frames pushed to an idle
// queue, or for Close.
func (s *Socket) startDrain() { go s.drain() }

// drain is the write side while it runs (one at a time, see the package
// comment): it writes what is queued until the queue is empty, and on Close
// writes the close frame and ends the connection.
func (s *Socket) drain() {
	conn := s.conn.Load()
	var batch []sendq.Entry
	for {
		if s.closing() {
			s.finish(conn)
			return
		}
		var more bool
		batch, more = s.q.Take(batch)
		if !more {
			return
		}
		if err := s.write(conn, batch); err != nil {
			if !s.closing() {
				s.logf(slog.LevelDebug, "write failed", logging.Err(err))
			}
			s.Close(websocket.StatusGoingAway, "")
			_ = conn.CloseNow()
			s.q.Close() // wakes a replay blocked on a full queue
			close(s.done)
			return
		}
	}
}

// finish writes the close frame and waits for the handshake (bounded by the
// library: 5 s to write, 5 s for the peer's answer).
func (s *Socket) finish(conn *websocket.Conn) {
	s.q.Close()
	defer close(s.done)
	err := conn.Close(s.code, s.reason)
	if err != nil && !errors.Is(err, context.Canceled) {
		s.logf(slog.LevelDebug, "close handshake incomplete", slog.Int("code", int(s.code)), logging.Err(err))
	}
}

// startTimers arms the keepalive ping and the token expiry.
func (s *Socket) startTimers() {
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	s.ping = time.AfterFunc(s.cfg.PingInterval, s.keepalive)
	if !s.cfg.Expiry.IsZero() {
		s.expiry = time.AfterFunc(time.Until(s.cfg.Expiry), func() {
			s.Close(websocket.StatusPolicyViolation, "token expired")
		})
	}
}

func (s *Socket) stopTimers() {
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	s.stopped = true
	s.ping.Stop()
	if s.expiry != nil {
		s.expiry.Stop()
	}
}

// keepalive sends one ping and waits for the pong (the reader handles it),
// then arms the next one. It runs on the timer's own goroutine, which
// lives only while a ping is in flight.
func (s *Socket) keepalive() {
	if s.closing() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PingTimeout)
	err := s.conn.Load().Ping(ctx)
	cancel()
	if err != nil {
		// A failed ping has already closed the connection (coder/websocket
		// closes on any context error); the reader sees it and Run ends.
		if !s.closing() {
			s.logf(slog.LevelDebug, "keepalive ping failed", logging.Err(err))
		}
		return
	}
	s.timerMu.Lock()
	if !s.stopped {
		s.ping.Reset(s.cfg.PingInterval)
	}
	s.timerMu.Unlock()
}

// write writes a batch: in batch mode as one message of '\n'-separated
// frames, else one message per frame. It stops early once Close was called,
// so a slow consumer gets its close frame as soon as possible. With an
// output (Accept), the messages are gathered and reach the network in one
// write.
func (s *Socket) write(conn *websocket.Conn, batch []sendq.Entry) error {
	if len(batch) == 0 {
		return nil
	}
	now := time.Now().UnixMilli()
	ctx := context.Background()
	if s.out == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.WriteTimeout)
		defer cancel()
	} else {
		// The library's writes only append to the gathered buffer; the
		// network write is bounded by its own deadline in end.
		s.out.begin()
	}
	written, msgs, err := s.writeMessages(ctx, conn, batch)
	if s.out != nil {
		if eerr := s.out.end(); err == nil {
			err = eerr
		}
	}
	if err != nil {
		return err
	}
	s.sent(batch[:written], now)
	s.m.WebSocketMessages.Add(float64(msgs))
	return nil
}

// writeMessages hands the batch to the library; it reports how many frames
// and messages it wrote.
func (s *Socket) writeMessages(ctx context.Context, conn *websocket.Conn, batch []sendq.Entry) (frames, msgs int, err error) {
	if s.cfg.Batch && len(batch) > 1 {
		buf := getBuf()
		defer putBuf(buf)
		for i, e := range batch {
			if i > 0 {
				*buf = append(*buf, '\n')
			}
			*buf = append(*buf, e.Data...)
		}
		if err := conn.Write(ctx, websocket.MessageText, *buf); err != nil {
			return 0, 0, err
		}
		return len(batch), 1, nil
	}
	for i, e := range batch {
		if s.closing() {
			return i, i, nil
		}
		if err := conn.Write(ctx, websocket.MessageText, e.Data); err != nil {
			return i, i, err
		}
	}
	return len(batch), len(batch), nil
}

// sent counts written frames and observes the delivery lag of live ones.
func (s *Socket) sent(es []sendq.Entry, now int64) {
	if len(es) == 0 {
		return
	}
	s.m.FramesSent.Add(float64(len(es)))
	for _, e := range es {
		if e.TS > 0 {
			s.m.DeliveryLag.Observe(float64(max(now-e.TS, 0)) / 1000)
		}
	}
}
