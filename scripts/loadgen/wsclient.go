package loadgen

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxMessage bounds one server message; a batch of frames stays far below.
const maxMessage = 4 << 20

// readBufSize is the per-socket read buffer. Small, because the load
// generator holds up to 100k sockets and most of them are idle; bigger
// messages are read past it straight into the message buffer.
const readBufSize = 1024

// wsGUID is the fixed GUID of the opening handshake (RFC 6455 section 1.3).
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// DialError is a refused connect (a WebSocket upgrade or an SSE stream): the
// HTTP status and, when the body is the contract's error JSON, its code.
type DialError struct {
	Status int
	Code   string
}

func (e *DialError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("refused: %d %s", e.Status, e.Code)
	}
	return fmt.Sprintf("refused: %d", e.Status)
}

// CloseError is a close frame received from the server, or the closing
// comment of an SSE stream with the code of the same reason.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string { return fmt.Sprintf("closed by server: %d %s", e.Code, e.Reason) }

// wsConn is the client side of one WebSocket: the reader goroutine calls
// ReadMessage; any goroutine may call Write and Close (writes are serialised).
type wsConn struct {
	nc net.Conn
	br *bufio.Reader

	// Owned by the reader.
	msg []byte   // message being assembled, reused
	hdr [14]byte // frame header scratch
	ctl [125]byte

	wmu  sync.Mutex // serialises writes; guards wbuf
	wbuf []byte
}

// dialWS opens a WebSocket to u (ws:// or wss://) through d and completes the
// opening handshake before ctx ends.
func dialWS(ctx context.Context, d *net.Dialer, u *url.URL, header http.Header) (*wsConn, error) {
	nc, err := dialConn(ctx, d, u, u.Scheme == "wss")
	if err != nil {
		return nil, err
	}
	c := &wsConn{nc: nc, br: bufio.NewReaderSize(nc, readBufSize)}
	if err := c.handshake(u, header); err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// dialConn opens the TCP (and with secure, TLS) connection to u's host,
// with ctx's deadline on it for the handshake that follows; the caller
// clears it.
func dialConn(ctx context.Context, d *net.Dialer, u *url.URL, secure bool) (net.Conn, error) {
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if secure {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	nc, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if secure {
		tc := tls.Client(nc, &tls.Config{ServerName: u.Hostname()})
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		nc = tc
	}
	return nc, nil
}

// refusal reads a refused request's status and the contract's error code
// from its JSON body, and closes the body.
func refusal(resp *http.Response) *DialError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	de := &DialError{Status: resp.StatusCode}
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil {
		de.Code = e.Error.Code
	}
	return de
}

func (c *wsConn) handshake(u *url.URL, header http.Header) error {
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", u.RequestURI(), u.Host)
	fmt.Fprintf(&b, "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", key)
	for name, vals := range header {
		for _, v := range vals {
			fmt.Fprintf(&b, "%s: %s\r\n", name, v)
		}
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c.nc, b.String()); err != nil {
		return fmt.Errorf("write handshake: %w", err)
	}
	resp, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return fmt.Errorf("read handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return refusal(resp)
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		return errors.New("handshake: bad Sec-WebSocket-Accept")
	}
	return nil
}

// ReadMessage returns the next data message. The slice is valid until the
// next call. Pings are answered, pongs ignored; a close frame is answered and
// returned as *CloseError.
func (c *wsConn) ReadMessage() ([]byte, error) {
	c.msg = c.msg[:0]
	started := false
	for {
		if _, err := io.ReadFull(c.br, c.hdr[:2]); err != nil {
			return nil, err
		}
		fin := c.hdr[0]&0x80 != 0
		op := c.hdr[0] & 0x0f
		masked := c.hdr[1]&0x80 != 0
		n := uint64(c.hdr[1] & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(c.br, c.hdr[2:4]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(c.hdr[2:4]))
		case 127:
			if _, err := io.ReadFull(c.br, c.hdr[2:10]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(c.hdr[2:10])
		}
		if masked {
			return nil, errors.New("protocol: masked server frame")
		}
		if op >= opClose {
			if n > 125 || !fin {
				return nil, errors.New("protocol: bad control frame")
			}
			p := c.ctl[:n]
			if _, err := io.ReadFull(c.br, p); err != nil {
				return nil, err
			}
			if err := c.control(op, p); err != nil {
				return nil, err
			}
			continue
		}
		switch {
		case op == opContinuation && !started:
			return nil, errors.New("protocol: continuation without start")
		case op != opContinuation && started:
			return nil, errors.New("protocol: new message inside a fragmented one")
		case op != opContinuation && op != opText && op != opBinary:
			return nil, fmt.Errorf("protocol: unknown opcode %d", op)
		}
		started = true
		if uint64(len(c.msg))+n > maxMessage {
			return nil, fmt.Errorf("message over %d bytes", maxMessage)
		}
		start := len(c.msg)
		c.msg = append(c.msg, make([]byte, n)...)
		if _, err := io.ReadFull(c.br, c.msg[start:]); err != nil {
			return nil, err
		}
		if fin {
			return c.msg, nil
		}
	}
}

func (c *wsConn) control(op byte, p []byte) error {
	switch op {
	case opPing:
		return c.write(opPong, p, 5*time.Second)
	case opPong:
		return nil
	case opClose:
		ce := &CloseError{Code: 1005}
		if len(p) >= 2 {
			ce.Code = int(binary.BigEndian.Uint16(p))
			ce.Reason = string(p[2:])
		}
		_ = c.write(opClose, p[:min(len(p), 2)], time.Second)
		return ce
	default:
		return fmt.Errorf("protocol: unknown control opcode %d", op)
	}
}

// WriteText sends one text message.
func (c *wsConn) WriteText(p []byte) error { return c.write(opText, p, 5*time.Second) }

// write sends one masked frame (clients must mask, RFC 6455 section 5.3).
func (c *wsConn) write(op byte, p []byte, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b := c.wbuf[:0]
	b = append(b, 0x80|op)
	switch n := len(p); {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, p...)
	for i := range p {
		b[start+i] ^= mask[i&3]
	}
	c.wbuf = b
	_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.nc.Write(b)
	return err
}

// Close sends a normal close frame (best effort, briefly) and closes the
// connection, which ends a blocked ReadMessage.
func (c *wsConn) Close() {
	_ = c.write(opClose, []byte{0x03, 0xe8}, 200*time.Millisecond)
	_ = c.nc.Close()
}

// CloseNow closes the TCP connection without a close frame.
func (c *wsConn) CloseNow() { _ = c.nc.Close() }

// SetReadDeadline bounds the reads that follow (the wait for hello).
func (c *wsConn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }
