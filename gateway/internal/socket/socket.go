// Package socket is one merchant WebSocket on the gateway: its bounded send
// queue and the one writer goroutine that owns the write side, the read
// loop for client frames, keepalive pings, token expiry and the close codes
// of PROTOCOL.md ("Merchant socket").
//
// Goroutines per socket: the caller's (reading), the writer, and short-lived
// ones for a keepalive ping in flight and the replay. The fan-out only ever
// touches the queue (TrySend), so the writer could later be replaced by a
// shared pool without changing the hub.
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
	// maxScratch bounds the batch buffer a socket keeps between writes.
	maxScratch = 64 << 10
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
	log      *slog.Logger
	m        *metrics.Metrics

	conn atomic.Pointer[websocket.Conn] // set by Run

	closeOnce sync.Once
	closeReq  chan struct{} // closed by Close; never sent on
	// Written once, before closeReq is closed.
	code   websocket.StatusCode
	reason string
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
	return &Socket{
		id: id, merchant: merchant, bearer: bearer, cfg: cfg, proc: proc,
		q:        sendq.New(cfg.QueueSize),
		log:      log.With(slog.String(logging.KeyConn, id), slog.String(logging.KeyMerchant, merchant)),
		m:        m,
		closeReq: make(chan struct{}),
	}
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
		s.log.LogAttrs(context.Background(), slog.LevelInfo, "closing slow consumer", slog.Int("queue", s.q.Limit()))
	}
}

// Close asks the writer to close the connection with code after the frame
// it is writing; only the first call counts, and it reports whether it was
// the first. It never blocks.
func (s *Socket) Close(code websocket.StatusCode, reason string) bool {
	first := false
	s.closeOnce.Do(func() {
		s.code, s.reason = code, reason
		close(s.closeReq)
		first = true
	})
	return first
}

// CloseCode is the code Close was called with, or 0.
func (s *Socket) CloseCode() websocket.StatusCode {
	select {
	case <-s.closeReq:
		return s.code
	default:
		return 0
	}
}

func (s *Socket) closing() bool {
	select {
	case <-s.closeReq:
		return true
	default:
		return false
	}
}

// Run serves the connection until it ends: it starts the writer and, when
// replay is not nil, the replay, and reads client frames itself. ctx bounds
// calls made for the socket (the order API); ending it does not close the
// connection, Close does.
func (s *Socket) Run(ctx context.Context, conn *websocket.Conn, replay func(context.Context) error) {
	s.conn.Store(conn)
	// A frame over the limit makes coder/websocket close with 1009.
	conn.SetReadLimit(maxClientFrame)
	// Reads must not be cancelled by ctx: a cancelled read kills the
	// connection without a close frame. rctx ends after the writer closed.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.writeLoop(conn) })
	if !s.cfg.Expiry.IsZero() {
		t := time.AfterFunc(time.Until(s.cfg.Expiry), func() { s.Close(websocket.StatusPolicyViolation, "token expired") })
		defer t.Stop()
	}
	if replay != nil {
		wg.Go(func() {
			if err := replay(rctx); err != nil && !s.closing() && rctx.Err() == nil {
				s.log.LogAttrs(rctx, slog.LevelWarn, "replay failed", logging.Err(err))
				s.Close(websocket.StatusTryAgainLater, "replay failed")
			}
		})
	}
	s.readLoop(rctx, conn)
	s.Close(websocket.StatusNormalClosure, "")
	cancel() // a replay still fetching gives up
	wg.Wait()
}

// Abort drops the connection without a close handshake: the end of a drain
// for peers that do not answer.
func (s *Socket) Abort() {
	s.Close(websocket.StatusGoingAway, "")
	if c := s.conn.Load(); c != nil {
		_ = c.CloseNow()
	}
}

// writeLoop is the only writer of the connection, close frame included.
func (s *Socket) writeLoop(conn *websocket.Conn) {
	defer s.q.Close() // wakes a replay blocked on a full queue
	ping := time.NewTicker(s.cfg.PingInterval)
	defer ping.Stop()
	var pings sync.WaitGroup
	defer pings.Wait()
	pinging := false
	pingDone := make(chan struct{}, 1)
	var batch []sendq.Entry
	var scratch []byte
	for {
		select {
		case <-s.closeReq:
			s.finish(conn)
			return
		case <-pingDone:
			pinging = false
		case <-ping.C:
			if !pinging {
				pinging = true
				pings.Go(func() { s.ping(conn, pingDone) })
			}
		case <-s.q.Ready():
			batch = s.q.Take(batch)
			if err := s.write(conn, batch, &scratch); err != nil {
				if !s.closing() {
					s.log.LogAttrs(context.Background(), slog.LevelDebug, "write failed", logging.Err(err))
				}
				s.Close(websocket.StatusGoingAway, "")
				_ = conn.CloseNow()
				return
			}
		}
	}
}

// finish writes the close frame and waits for the handshake (bounded by the
// library: 5 s to write, 5 s for the peer's answer).
func (s *Socket) finish(conn *websocket.Conn) {
	err := conn.Close(s.code, s.reason)
	if err != nil && !errors.Is(err, context.Canceled) {
		s.log.LogAttrs(context.Background(), slog.LevelDebug, "close handshake incomplete",
			slog.Int("code", int(s.code)), logging.Err(err))
	}
}

func (s *Socket) ping(conn *websocket.Conn, done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PingTimeout)
	defer cancel()
	// A failed ping has already closed the connection (coder/websocket
	// closes on any context error); the reader sees it and Run ends.
	if err := conn.Ping(ctx); err != nil && !s.closing() {
		s.log.LogAttrs(ctx, slog.LevelDebug, "keepalive ping failed", logging.Err(err))
	}
}

// write writes a batch: in batch mode as one message of '\n'-separated
// frames, else one message per frame. It stops early once Close was called,
// so a slow consumer gets its close frame as soon as possible.
func (s *Socket) write(conn *websocket.Conn, batch []sendq.Entry, scratch *[]byte) error {
	if len(batch) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
	defer cancel()
	now := time.Now().UnixMilli()
	if s.cfg.Batch && len(batch) > 1 {
		buf := (*scratch)[:0]
		for i, e := range batch {
			if i > 0 {
				buf = append(buf, '\n')
			}
			buf = append(buf, e.Data...)
		}
		err := conn.Write(ctx, websocket.MessageText, buf)
		if cap(buf) <= maxScratch {
			*scratch = buf
		} else {
			*scratch = nil
		}
		if err != nil {
			return err
		}
		s.sent(batch, now)
		s.m.WebSocketMessages.Inc()
		return nil
	}
	for i, e := range batch {
		if s.closing() {
			return nil
		}
		if err := conn.Write(ctx, websocket.MessageText, e.Data); err != nil {
			return err
		}
		s.sent(batch[i:i+1], now)
		s.m.WebSocketMessages.Inc()
	}
	return nil
}

// sent counts written frames and observes the delivery lag of live ones.
func (s *Socket) sent(es []sendq.Entry, now int64) {
	s.m.FramesSent.Add(float64(len(es)))
	for _, e := range es {
		if e.TS > 0 {
			s.m.DeliveryLag.Observe(float64(max(now-e.TS, 0)) / 1000)
		}
	}
}
