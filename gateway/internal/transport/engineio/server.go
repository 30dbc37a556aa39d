package engineio

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"orderpush/gateway/internal/transport/ws"
)

// Defaults of Config.
const (
	DefaultPingInterval   = 25 * time.Second
	DefaultPingTimeout    = 20 * time.Second
	DefaultMaxPayload     = 64 << 10
	DefaultUpgradeTimeout = 10 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
)

// maxPacketsPerPost bounds the packets of one POST (maxPayload bounds its
// bytes): a payload of empty-ish packets costs the server a call each.
const maxPacketsPerPost = 1024

// Engine.IO's HTTP error codes (engine.io server, "errors").
const (
	codeUnknownTransport = 0
	codeUnknownSID       = 1
	codeBadHandshake     = 2
	codeBadRequest       = 3
	codeForbidden        = 4
	codeUnsupported      = 5
)

// Config tunes the server. Zero values mean the defaults.
type Config struct {
	PingInterval   time.Duration // server ping period (handshake pingInterval)
	PingTimeout    time.Duration // a ping unanswered this long ends the session
	MaxPayload     int           // bytes a client may send in one POST or websocket message
	UpgradeTimeout time.Duration // probe to upgrade, at most
	WriteTimeout   time.Duration // one response or websocket write, at most
	// NewID returns a session id; default: 26 random base32 characters.
	NewID func() string
	// Foreign, when set, is given requests for a sid this server does not
	// hold; it reports whether it answered them (e.g. by forwarding).
	Foreign func(w http.ResponseWriter, r *http.Request, sid string) bool
	// CheckOrigin, when set, refuses requests whose Origin it rejects.
	CheckOrigin func(origin string) bool
	// Admit, when set, is asked at each handshake (connect limits). It
	// returns what to call when the session ends, or a refusal: a message
	// the client gets right after the open packet, before the session is
	// closed again (so a socket.io client sees connect_error with the
	// refusal's code, while the server keeps nothing of it).
	Admit func(r *http.Request) (release func(), refusal []byte)
}

// Handler accepts new sessions.
type Handler interface {
	// Open is called for each handshake with the new session and the
	// handshake request (not to be kept). The session is not running yet:
	// entries pushed now go out after the open packet.
	Open(s *Session, r *http.Request) Receiver
}

// Server serves Engine.IO on one path.
type Server struct {
	cfg Config
	h   Handler

	mu       sync.Mutex
	sessions map[string]*Session // guarded by mu
	stopped  bool                // guarded by mu
}

// NewServer returns a server whose new sessions go to h.
func NewServer(cfg Config, h Handler) *Server {
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = DefaultPingTimeout
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = DefaultMaxPayload
	}
	if cfg.UpgradeTimeout <= 0 {
		cfg.UpgradeTimeout = DefaultUpgradeTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.NewID == nil {
		cfg.NewID = RandomID
	}
	return &Server{cfg: cfg, h: h, sessions: make(map[string]*Session)}
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// RandomID is 16 random bytes in lower-case base32 (26 characters).
func RandomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(idEncoding.EncodeToString(b[:]))
}

// ServeHTTP serves every request under the Engine.IO path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.cfg.CheckOrigin != nil {
		if o := r.Header.Get("Origin"); o != "" {
			if !s.cfg.CheckOrigin(o) {
				httpError(w, codeForbidden, "Forbidden")
				return
			}
			// The socket.io client polls with XHR/fetch from the page's
			// origin: without these a cross-origin dashboard cannot read.
			w.Header().Set("Access-Control-Allow-Origin", o)
			w.Header().Set("Access-Control-Allow-Credentials", "true")
			w.Header().Add("Vary", "Origin")
		}
	}
	if r.Method == http.MethodOptions {
		w.Header().Set("Access-Control-Allow-Methods", "GET, POST")
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	q := r.URL.Query()
	if q.Get("EIO") != "4" {
		httpError(w, codeUnsupported, "Unsupported protocol version")
		return
	}
	tr := q.Get("transport")
	if tr != "polling" && tr != "websocket" {
		httpError(w, codeUnknownTransport, "Transport unknown")
		return
	}
	if q.Has("j") {
		httpError(w, codeBadRequest, "JSONP is not supported")
		return
	}
	sid := q.Get("sid")
	if sid == "" {
		if r.Method != http.MethodGet {
			httpError(w, codeBadHandshake, "Bad handshake method")
			return
		}
		s.handshake(w, r, tr)
		return
	}
	sess := s.lookup(sid)
	if sess == nil {
		if s.cfg.Foreign != nil && s.cfg.Foreign(w, r, sid) {
			return
		}
		httpError(w, codeUnknownSID, "Session ID unknown")
		return
	}
	switch {
	case tr == "websocket" && r.Method == http.MethodGet:
		s.serveUpgrade(w, r, sess)
	case tr == "polling" && r.Method == http.MethodGet:
		sess.poll(w, r)
	case tr == "polling" && r.Method == http.MethodPost:
		sess.post(w, r)
	default:
		httpError(w, codeBadRequest, "Bad request")
	}
}

// handshake opens a session: its open packet is the answer to the polling
// GET, or the first websocket message.
func (s *Server) handshake(w http.ResponseWriter, r *http.Request, tr string) {
	sess := newSession(s, s.cfg.NewID())
	var conn *websocket.Conn
	if tr == "websocket" {
		var (
			out *ws.Output
			err error
		)
		conn, out, err = s.accept(w, r, sess)
		if err != nil {
			return // Accept answered
		}
		conn.SetReadLimit(int64(s.cfg.MaxPayload))
		sess.mode, sess.ws, sess.out = wsOnly, conn, out
	}
	upgrades := []string{"websocket"}
	if conn != nil {
		upgrades = []string{}
	}
	open, _ := json.Marshal(struct {
		SID          string   `json:"sid"`
		Upgrades     []string `json:"upgrades"`
		PingInterval int64    `json:"pingInterval"`
		PingTimeout  int64    `json:"pingTimeout"`
		MaxPayload   int      `json:"maxPayload"`
	}{sess.id, upgrades, s.cfg.PingInterval.Milliseconds(), s.cfg.PingTimeout.Milliseconds(), s.cfg.MaxPayload})
	open = AppendPacket(nil, Open, open)
	if s.cfg.Admit != nil {
		release, refusal := s.cfg.Admit(r)
		if refusal != nil {
			s.refuse(w, conn, open, refusal)
			return
		}
		sess.release = release
	}
	// The receiver before the session can be found: every end reports to it.
	sess.rcv = s.h.Open(sess, r)
	if !s.add(sess) {
		if sess.release != nil {
			sess.release()
		}
		if conn != nil {
			_ = conn.Close(websocket.StatusGoingAway, "")
		} else {
			httpError(w, codeForbidden, "Server is shutting down")
		}
		return
	}
	sess.startHeartbeat()
	if conn == nil {
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		if _, err := w.Write(open); err != nil {
			sess.CloseNowFor("transport error")
		}
		return
	}
	if err := sess.writeWS([][]byte{open}); err != nil {
		sess.CloseNowFor("transport error")
		return
	}
	// The reader runs on a goroutine of its own: this one's stack grew deep
	// in the HTTP stack and would be kept at that size for the session's
	// life.
	go sess.read(conn)
}

// refuse answers a refused handshake: the open packet, the refusal, the
// close packet; no session is kept.
func (s *Server) refuse(w http.ResponseWriter, conn *websocket.Conn, open, refusal []byte) {
	if conn == nil {
		body := append(append(append([]byte(nil), open...), Separator), AppendPacket(nil, Message, refusal)...)
		body = append(append(body, Separator), closePacket...)
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		_, _ = w.Write(body)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
	defer cancel()
	if conn.Write(ctx, websocket.MessageText, open) == nil {
		_ = conn.Write(ctx, websocket.MessageText, AppendPacket(nil, Message, refusal))
	}
	_ = conn.Close(websocket.StatusNormalClosure, "")
}

// serveUpgrade takes the websocket of a polling session's upgrade.
func (s *Server) serveUpgrade(w http.ResponseWriter, r *http.Request, sess *Session) {
	sess.mu.Lock()
	if sess.mode != polling || sess.upgrading || sess.closed {
		sess.mu.Unlock()
		httpError(w, codeBadRequest, "Bad request")
		return
	}
	sess.upgrading = true
	sess.mu.Unlock()
	conn, out, err := s.accept(w, r, sess)
	if err != nil {
		sess.mu.Lock()
		sess.upgrading = false
		sess.mu.Unlock()
		return
	}
	conn.SetReadLimit(int64(s.cfg.MaxPayload))
	go sess.upgrade(conn, out) // on a fresh goroutine, as in handshake
}

// accept takes the websocket of sess over with the gathering output of
// package ws: writeTo's batch reaches the network in one write.
func (s *Server) accept(w http.ResponseWriter, r *http.Request, sess *Session) (*websocket.Conn, *ws.Output, error) {
	// Origins are checked by CheckOrigin; the library's same-host check
	// would refuse every cross-origin dashboard.
	return ws.AcceptGathering(w, r, &websocket.AcceptOptions{
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	}, s.cfg.WriteTimeout, sess.stalled)
}

func (s *Server) add(sess *Session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.sessions[sess.id] = sess
	return true
}

func (s *Server) lookup(sid string) *Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[sid]
}

func (s *Server) forget(sess *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions[sess.id] == sess {
		delete(s.sessions, sess.id)
	}
}

// Len is the number of open sessions.
func (s *Server) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Sessions is a snapshot of the open sessions.
func (s *Server) Sessions() []*Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		out = append(out, sess)
	}
	return out
}

// Stop refuses new sessions from now on; open ones stay (the caller closes
// them, spread over time).
func (s *Server) Stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}

// readBody reads at most limit bytes; more is an error.
func readBody(r *http.Request, limit int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read payload: %w", err)
	}
	if len(b) > limit {
		return nil, errors.New("payload over maxPayload (" + strconv.Itoa(limit) + " bytes)")
	}
	return b, nil
}

// httpError writes Engine.IO's JSON error: 400, or 403 for Forbidden.
func httpError(w http.ResponseWriter, code int, msg string) {
	status := http.StatusBadRequest
	if code == codeForbidden {
		status = http.StatusForbidden
	}
	b, _ := json.Marshal(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
