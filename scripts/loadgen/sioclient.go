package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"
)

// sioConn is a socket.io client (protocol 5, default namespace) over
// Engine.IO 4's websocket transport, as much of it as the load generator
// needs (PROTOCOL.md "socket.io"): the open packet, CONNECT with the token
// in auth, pongs for the server's pings, and every EVENT turned back into
// the native frame it carries, so the fleet reads all transports alike.
// One reader goroutine calls ReadMessage.
type sioConn struct {
	ws    *wsConn
	frame []byte // the frame rebuilt from the last EVENT, reused
}

// dialSIO opens u (/socket.io/?EIO=4&transport=websocket) and connects to
// the default namespace before ctx ends. A refused CONNECT is an error
// naming the CONNECT_ERROR's message (the contract's error code).
func dialSIO(ctx context.Context, d *net.Dialer, u *url.URL, token string) (*sioConn, error) {
	ws, err := dialWS(ctx, d, u, nil)
	if err != nil {
		return nil, err
	}
	c := &sioConn{ws: ws}
	if err := c.connect(ctx, token); err != nil {
		ws.CloseNow()
		return nil, err
	}
	return c, nil
}

func (c *sioConn) connect(ctx context.Context, token string) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.ws.SetReadDeadline(dl)
		defer c.ws.SetReadDeadline(time.Time{})
	}
	msg, err := c.ws.ReadMessage()
	if err != nil {
		return fmt.Errorf("engine.io open: %w", err)
	}
	if len(msg) < 2 || msg[0] != '0' || !json.Valid(msg[1:]) {
		return fmt.Errorf("engine.io: first packet is not open: %.80q", msg)
	}
	auth, err := json.Marshal(struct {
		Token string `json:"token"`
	}{token})
	if err != nil {
		return err
	}
	if err := c.ws.WriteText(append([]byte("40"), auth...)); err != nil {
		return fmt.Errorf("socket.io CONNECT: %w", err)
	}
	for {
		msg, err := c.ws.ReadMessage()
		if err != nil {
			return fmt.Errorf("socket.io CONNECT: %w", err)
		}
		switch {
		case bytes.HasPrefix(msg, []byte("40")):
			return nil
		case bytes.HasPrefix(msg, []byte("44")):
			var ce struct {
				Message string `json:"message"`
			}
			_ = json.Unmarshal(msg[2:], &ce)
			return fmt.Errorf("socket.io connect_error %.80q", ce.Message)
		case len(msg) > 0 && msg[0] == '2':
			if err := c.pong(msg); err != nil {
				return err
			}
		default:
			return fmt.Errorf("socket.io: %.80q before the CONNECT answer", msg)
		}
	}
}

// pong answers an Engine.IO ping with its payload.
func (c *sioConn) pong(ping []byte) error {
	p := append([]byte{'3'}, ping[1:]...)
	return c.ws.WriteText(p)
}

// errSIOClosed is the server ending the session (an Engine.IO close or a
// socket.io DISCONNECT); the contract's clients reconnect and recover.
var errSIOClosed = errors.New("socket.io: session closed by the server")

// ReadMessage returns the frame of the next EVENT, answering pings and
// skipping noops, acknowledgements and CONNECT answers on the way.
func (c *sioConn) ReadMessage() ([]byte, error) {
	for {
		msg, err := c.ws.ReadMessage()
		if err != nil {
			return nil, err
		}
		if len(msg) == 0 {
			return nil, errors.New("engine.io: empty packet")
		}
		switch msg[0] {
		case '2':
			if err := c.pong(msg); err != nil {
				return nil, err
			}
		case '6': // noop
		case '1':
			return nil, errSIOClosed
		case '4':
			if len(msg) < 2 {
				return nil, errors.New("engine.io: empty message")
			}
			switch msg[1] {
			case '2':
				fr, err := sioEventFrame(c.frame[:0], msg[2:])
				if err != nil {
					return nil, err
				}
				c.frame = fr
				return fr, nil
			case '1':
				return nil, errSIOClosed
			}
		default:
			return nil, fmt.Errorf("engine.io: unexpected packet %.80q", msg)
		}
	}
}

// SetReadDeadline bounds the reads that follow.
func (c *sioConn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

// Close closes the websocket with a close frame (the server ends the
// session).
func (c *sioConn) Close() { c.ws.Close() }

// CloseNow closes the TCP connection.
func (c *sioConn) CloseNow() { c.ws.CloseNow() }

// sioEventFrame appends to dst the native frame an EVENT payload carries:
// ["<event>",{<seq, ts, data>}] with an optional recovery offset "<seq>"
// as a third argument (PROTOCOL.md "socket.io") becomes
// {"event":"<event>",<seq, ts, data>}. What the gateway writes takes a
// fast path that scans the argument once and decodes nothing; anything
// else is decoded in full.
func sioEventFrame(dst, payload []byte) ([]byte, error) {
	name, arg, ok := sioEventFast(payload)
	if !ok {
		var err error
		if name, arg, err = sioEventSlow(payload); err != nil {
			return nil, err
		}
	}
	dst = append(dst, `{"event":`...)
	dst = append(dst, name...)
	if inner := arg[1:]; len(bytes.TrimSpace(inner)) > 1 {
		dst = append(dst, ',')
		return append(dst, inner...), nil
	}
	return append(dst, '}'), nil
}

// sioEventSlow decodes an EVENT payload in full: the name (a JSON string)
// and the first argument, an object ({} when there is none).
func sioEventSlow(payload []byte) (name, arg []byte, err error) {
	var args []json.RawMessage
	var s string
	if err := json.Unmarshal(payload, &args); err != nil || len(args) == 0 || json.Unmarshal(args[0], &s) != nil {
		return nil, nil, fmt.Errorf("socket.io: bad EVENT %.80q", payload)
	}
	arg = []byte("{}")
	if len(args) > 1 {
		arg = bytes.TrimSpace(args[1])
	}
	if arg[0] != '{' {
		return nil, nil, fmt.Errorf("socket.io: EVENT argument is not an object: %.80q", payload)
	}
	return bytes.TrimSpace(args[0]), arg, nil
}

// sioEventFast splits the gateway's EVENT shape: a name without escapes,
// one object, maybe a decimal offset string, nothing else.
func sioEventFast(p []byte) (name, arg []byte, ok bool) {
	if len(p) < 2 || p[0] != '[' || p[1] != '"' || p[len(p)-1] != ']' {
		return nil, nil, false
	}
	end := bytes.IndexByte(p[2:], '"')
	if end < 0 {
		return nil, nil, false
	}
	name = p[1 : end+3]
	for _, ch := range name[1 : len(name)-1] {
		if ch < ' ' || ch == '\\' || ch >= 0x7f {
			return nil, nil, false
		}
	}
	rest := p[len(name)+1 : len(p)-1] // after the name, without the final ']'
	if len(rest) < 3 || rest[0] != ',' || rest[1] != '{' {
		return nil, nil, false
	}
	rest = rest[1:]
	n := objectEnd(rest)
	if n < 0 || rest[n-1] != '}' {
		return nil, nil, false
	}
	if tail := rest[n:]; len(tail) > 0 {
		// The recovery offset: ,"<digits>"
		if len(tail) < 4 || tail[0] != ',' || tail[1] != '"' || tail[len(tail)-1] != '"' {
			return nil, nil, false
		}
		for _, ch := range tail[2 : len(tail)-1] {
			if ch < '0' || ch > '9' {
				return nil, nil, false
			}
		}
	}
	return name, rest[:n], true
}

// objectEnd is the length of the JSON value that opens b with '{' or '[',
// found by matching brackets outside strings (not a validation), or -1.
func objectEnd(b []byte) int {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if i >= len(b) {
				return -1
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return -1
}
