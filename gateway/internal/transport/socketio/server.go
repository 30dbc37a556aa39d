package socketio

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"orderpush/gateway/internal/session/sendq"
	"orderpush/gateway/internal/transport/engineio"
	"orderpush/pkg/wire"
)

// DefaultConnectTimeout is Config.ConnectTimeout's default.
const DefaultConnectTimeout = 10 * time.Second

// Config tunes the server. Zero values mean the defaults.
type Config struct {
	Engine         engineio.Config
	ConnectTimeout time.Duration // a session without a successful CONNECT by then is closed
	// Admit, when set, applies the connect limits to a handshake: it
	// returns what to call when the session ends, or a refusal, which the
	// client gets as CONNECT_ERROR right after the open packet.
	Admit func(r *http.Request) (release func(), refusal *Refusal)
}

// Server is socket.io at one path.
type Server struct {
	cfg     Config
	backend Backend
	eio     *engineio.Server
	base    context.Context // parent of every session's work
	stop    context.CancelFunc
}

// New returns a server whose clients are admitted by backend.
func New(cfg Config, backend Backend) *Server {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	s := &Server{cfg: cfg, backend: backend}
	s.base, s.stop = context.WithCancel(context.Background())
	if cfg.Admit != nil {
		cfg.Engine.Admit = func(r *http.Request) (func(), []byte) {
			release, ref := cfg.Admit(r)
			if ref != nil {
				return nil, connectError(ref)
			}
			return release, nil
		}
	}
	s.eio = engineio.NewServer(cfg.Engine, s)
	return s
}

// ServeHTTP serves the socket.io path (/socket.io/).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.eio.ServeHTTP(w, r) }

// Engine is the Engine.IO server underneath (counts, tests).
func (s *Server) Engine() *engineio.Server { return s.eio }

// Stop refuses new Engine.IO sessions and closes those without an admitted
// CONNECT; admitted clients are sessions of the gateway, which drains them.
func (s *Server) Stop() {
	s.eio.Stop()
	for _, sess := range s.eio.Sessions() {
		if c, ok := sess.Receiver().(*Conn); ok && !c.admitted() {
			sess.CloseNow()
		}
	}
}

// Close ends every connection's pending work (admissions).
func (s *Server) Close() { s.stop() }

// frameOf is the merchant frame of an entry for appendEvent, and its
// recovery offset: a sequenced frame's seq, hello's and resync's data.seq.
// An entry with a head (every frame the gateway routes or builds) needs no
// decoding: its Seq is that offset. Otherwise Data is decoded; a frame that
// does not parse (never built by the gateway) becomes an error event.
func frameOf(e sendq.Entry) (wire.Frame, uint64) {
	if e.Head != nil {
		return *e.Head, e.Seq
	}
	var f wire.Frame
	if err := json.Unmarshal(e.Data, &f); err != nil || f.Event == "" {
		f = wire.Frame{Event: wire.EventError, Data: json.RawMessage(`{"code":"invalid_frame","message":"unreadable frame"}`)}
	}
	off := f.Seq
	if off == 0 && (f.Event == wire.EventHello || f.Event == wire.EventResync) {
		var d struct {
			Seq uint64 `json:"seq"`
		}
		if json.Unmarshal(f.Data, &d) == nil {
			off = d.Seq
		}
	}
	return f, off
}

// appendEvent appends the Engine.IO message for a merchant frame: an EVENT
// named by the frame's event whose argument is the rest of the frame
// ({seq, ts, data}); with offset, a sequenced frame adds its seq, and
// hello and resync their data.seq (off, from frameOf), as a last string
// argument (the client's recovery offset).
func appendEvent(dst []byte, f wire.Frame, off uint64, offset bool) []byte {
	dst = append(dst, byte(engineio.Message), byte(Event), '[')
	dst = appendString(dst, f.Event)
	dst = append(dst, ",{"...)
	sep := false
	if f.Seq > 0 {
		dst = append(dst, `"seq":`...)
		dst = strconv.AppendUint(dst, f.Seq, 10)
		sep = true
	}
	if f.TS != 0 {
		if sep {
			dst = append(dst, ',')
		}
		dst = append(dst, `"ts":`...)
		dst = strconv.AppendInt(dst, f.TS, 10)
		sep = true
	}
	if len(f.Data) > 0 {
		if sep {
			dst = append(dst, ',')
		}
		dst = append(dst, `"data":`...)
		dst = append(dst, f.Data...)
	}
	dst = append(dst, '}')
	if offset && (off > 0 || f.Event == wire.EventHello || f.Event == wire.EventResync) {
		dst = append(dst, ",\""...)
		dst = strconv.AppendUint(dst, off, 10)
		dst = append(dst, '"')
	}
	return append(dst, ']')
}

// appendString appends s as a JSON string. Event names are plain ASCII,
// which is copied between quotes without an allocation; anything else is
// left to encoding/json.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
