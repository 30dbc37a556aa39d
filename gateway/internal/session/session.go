package session

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/session/sendq"
	"orderpush/pkg/config"
	"orderpush/pkg/logging"
)

// DefaultQueueSize is SEND_QUEUE_SIZE's default.
const DefaultQueueSize = 256

// Identity is who a session is: fixed at admission.
type Identity struct {
	ID        string    // connection id (hello.connId)
	Merchant  string    // the token's sub
	Bearer    string    // the token itself, for process forwarding; never logged
	Expiry    time.Time // the token's exp: the session ends with Policy then; zero: never
	Transport string    // metrics label: ws, sse, socketio
}

// Config tunes a session. Zero values mean the defaults.
type Config struct {
	QueueSize int         // SEND_QUEUE_SIZE: frames queued before TryAgainLater
	MsgRate   config.Rate // CLIENT_MSG_RATE: client messages per second (burst twice); zero: off
}

// Processor forwards a process message to the order API with the
// session's token.
type Processor interface {
	Process(ctx context.Context, orderNo, bearer string) error
}

// Receipts takes a socket's receipts for forwarding to the order API
// (package receipts); neither call may block on the network.
type Receipts interface {
	Ack(merchant string, seq uint64)
	Seen(merchant, orderNo string)
}

// Deps are what a session reports to and calls. Processor may be nil
// (process messages then get an error frame); so may Receipts (ack and
// seen are then ignored).
type Deps struct {
	Processor Processor
	Receipts  Receipts
	Log       *slog.Logger
	Metrics   *metrics.Metrics
}

// Transport is the connection under a session, as the session sees it.
type Transport interface {
	// CloseNow drops the connection without a goodbye. Any goroutine may
	// call it, more than once; it must not block for long.
	CloseNow()
}

// Writer is a push transport's write side. Only the session's drainer
// calls WriteFrames and WriteClose, one call at a time.
type Writer interface {
	Transport
	// WriteFrames writes frames in order and reports how many it wrote; it
	// may stop early once the session Overflowed. An error means the
	// connection is gone.
	WriteFrames(batch []sendq.Entry) (int, error)
	// WriteClose tells the peer why the connection ends and ends it; it is
	// the last call and may wait (bounded) for the peer's answer.
	WriteClose(r Reason, text string) error
}

// Session is one merchant connection. See the package comment for who
// calls what.
type Session struct {
	// Static after New.
	id        string
	merchant  string
	bearer    string
	expiry    time.Time
	transport string
	cfg       Config
	q         *sendq.Queue
	proc      Processor
	rcpt      Receipts
	// log is shared by every session: the conn and merchant attributes are
	// added per record (a With per session would keep ~300 B each).
	log *slog.Logger
	m   *metrics.Metrics

	// Set once by Start, before the first drainer.
	att    atomic.Pointer[attachment]
	ctx    context.Context    // the session's lifetime context: ends at End
	cancel context.CancelFunc // ends ctx
	replay sync.WaitGroup

	closeOnce sync.Once
	closed    atomic.Bool // set by Close after reason and text
	aborted   atomic.Bool // set before Close by Abort and DeadPeer: no goodbye is written
	reason    Reason
	text      string
	doneOnce  sync.Once
	writing   sync.WaitGroup // one until the write side has finished (a WaitGroup, not a channel: no allocation)

	// lim is owned by the reading side (Handle); made at the first
	// message, so an idle session does not carry it.
	lim *limiter
	// told is the highest merchant seq queued for this socket (hello,
	// resync, sequenced frames): the most it may ack.
	told atomic.Uint64
	// answer, owned by the reading side, is where reply puts the frame
	// while Answer runs.
	answer *[]byte

	timerMu sync.Mutex
	expire  *time.Timer // guarded by timerMu
	stopped bool        // guarded by timerMu: End ran; no timer is armed again
}

// New returns a session that is not attached to a transport yet; frames may
// be queued (the hub queues hello at Join).
func New(id Identity, cfg Config, deps Deps) *Session {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	s := &Session{
		id: id.ID, merchant: id.Merchant, bearer: id.Bearer, expiry: id.Expiry, transport: id.Transport,
		cfg: cfg, proc: deps.Processor, rcpt: deps.Receipts, log: deps.Log, m: deps.Metrics,
	}
	s.writing.Add(1)
	s.q = sendq.New(cfg.QueueSize, s.wake)
	return s
}

// ID is the connection id (hello.connId).
func (s *Session) ID() string { return s.id }

// Merchant is the merchant id.
func (s *Session) Merchant() string { return s.merchant }

// Transport is the transport's metrics label.
func (s *Session) Transport() string { return s.transport }

// TrySend queues e without blocking; false when the queue is full or closed
// (hub.Member).
func (s *Session) TrySend(e sendq.Entry) bool {
	s.tell(e.Seq)
	return s.q.TryPush(e)
}

// Send queues e, waiting for room: the session's own replay (hub.Member).
func (s *Session) Send(ctx context.Context, e sendq.Entry) error {
	s.tell(e.Seq)
	return s.q.Push(ctx, e)
}

// tell raises told to seq. It runs before the push: a client that acks a
// frame the moment it arrives must find it counted. A frame that is then
// not queued ends the session, so the early raise admits nothing more.
func (s *Session) tell(seq uint64) {
	for {
		cur := s.told.Load()
		if seq <= cur || s.told.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// Overflow ends a session that cannot keep up: TryAgainLater (hub.Member;
// WebSocket 1013).
func (s *Session) Overflow() {
	if s.Close(TryAgainLater, "slow consumer") {
		s.m.SlowConsumerCloses.Inc()
		s.logf(slog.LevelInfo, "closing slow consumer", slog.Int("queue", s.q.Limit()))
	}
}

// Close asks for the session to end with r after the frame being written;
// only the first call counts, and it reports whether it was the first. It
// never blocks.
func (s *Session) Close(r Reason, text string) bool {
	first := false
	s.closeOnce.Do(func() {
		s.reason, s.text = r, text
		s.closed.Store(true)
		first = true
	})
	if first {
		s.q.Wake()
	}
	return first
}

// Closing reports the reason Close was called with, and its text; None
// while the session is open.
func (s *Session) Closing() (Reason, string) {
	if !s.closed.Load() {
		return None, ""
	}
	return s.reason, s.text
}

func (s *Session) closing() bool { return s.closed.Load() }

// Overflowed reports whether the session is closing because it could not
// keep up: a transport writing a batch stops early then, so the goodbye
// goes out as soon as possible.
func (s *Session) Overflowed() bool { return s.closed.Load() && s.reason == TryAgainLater }

// Abort drops the connection without a goodbye: the end of a drain for
// peers that do not answer.
func (s *Session) Abort() {
	s.aborted.Store(true)
	s.Close(GoingAway, "")
	s.closeNow()
}

// DeadPeer aborts a session whose peer failed the transport's liveness
// check (PING_TIMEOUT), and counts it.
func (s *Session) DeadPeer() {
	s.aborted.Store(true)
	if s.Close(GoingAway, "") {
		s.m.DeadPeerCloses.Inc()
		s.logf(slog.LevelInfo, "closing dead peer")
	}
	s.closeNow()
}

func (s *Session) closeNow() {
	if a := s.att.Load(); a != nil {
		a.t.CloseNow()
	}
}

func (s *Session) finished() { s.doneOnce.Do(s.writing.Done) }

// logf logs with the session's attributes.
func (s *Session) logf(level slog.Level, msg string, attrs ...slog.Attr) {
	if !s.log.Enabled(context.Background(), level) {
		return
	}
	attrs = append(attrs, slog.String(logging.KeyConn, s.id), slog.String(logging.KeyMerchant, s.merchant))
	s.log.LogAttrs(context.Background(), level, msg, attrs...)
}
