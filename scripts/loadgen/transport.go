package loadgen

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Transports a merchant socket of the load generator speaks (PROTOCOL.md
// "Merchant socket" and "Other transports").
const (
	TransportWS       = "ws"       // GET /ws, native WebSocket
	TransportSSE      = "sse"      // GET /sse, Server-Sent Events
	TransportSocketIO = "socketio" // /socket.io/, Engine.IO 4 websocket transport
)

// AllTransports in the order the bench runs them; ws first, as the others
// are compared with it.
var AllTransports = []string{TransportWS, TransportSSE, TransportSocketIO}

// ParseTransports reads a comma-separated transport list.
func ParseTransports(s string) ([]string, error) {
	var out []string
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimSpace(t)
		if err := checkTransport(t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func checkTransport(t string) error {
	switch t {
	case TransportWS, TransportSSE, TransportSocketIO:
		return nil
	}
	return fmt.Errorf("transport %q: want %s", t, strings.Join(AllTransports, ", "))
}

// transportVariant labels a report: the scenario's own variant, then the
// transport unless it is the native WebSocket (whose labels stay as they
// were before there were other transports).
func transportVariant(base, transport string) string {
	if transport == "" || transport == TransportWS {
		return base
	}
	if base == "" {
		return transport
	}
	return base + "-" + transport
}

// frameConn is one merchant connection of any transport, read by one
// goroutine. ReadMessage returns the server's frames as /ws sends them: one
// frame's JSON, or with ?batch=1 several separated by '\n'; the slice is
// valid until the next call. Close and CloseNow may be called from any
// goroutine and end a blocked ReadMessage.
type frameConn interface {
	ReadMessage() ([]byte, error)
	SetReadDeadline(t time.Time) error
	Close()
	CloseNow()
}

// dialTransport opens a merchant connection to the gateway whose /ws URL
// is gw; the other transports' endpoints sit next to /ws.
func dialTransport(ctx context.Context, d *net.Dialer, transport string, gw *url.URL, token string, batch bool) (frameConn, error) {
	u := *gw
	q := url.Values{}
	q.Set("token", token)
	base := strings.TrimSuffix(u.Path, "/ws")
	switch transport {
	case TransportSSE:
		u.Scheme = strings.Replace(u.Scheme, "ws", "http", 1)
		u.Path = base + "/sse"
		u.RawQuery = q.Encode()
		return asConn(dialSSE(ctx, d, &u))
	case TransportSocketIO:
		u.Path = base + "/socket.io/"
		q.Set("EIO", "4")
		q.Set("transport", "websocket")
		u.RawQuery = q.Encode()
		return asConn(dialSIO(ctx, d, &u, token))
	case TransportWS:
		q = u.Query()
		q.Set("token", token)
		if batch {
			q.Set("batch", "1")
		}
		u.RawQuery = q.Encode()
		return asConn(dialWS(ctx, d, &u, nil))
	}
	return nil, checkTransport(transport)
}

// asConn returns a dialled connection as a frameConn (a nil *T must not
// become a non-nil interface).
func asConn[T frameConn](c T, err error) (frameConn, error) {
	if err != nil {
		return nil, err
	}
	return c, nil
}
