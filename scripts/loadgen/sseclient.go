package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"time"
)

// sseEvents parses an event stream (the WHATWG HTML "event stream"
// format) line by line: "id:", "event:" and "data:" fields, comments, and
// the blank line that dispatches an event. Lines end in "\n" or "\r\n"; a
// lone "\r" as a line end is not supported (the gateway never writes one).
type sseEvents struct {
	data       []byte // the event being built: data lines joined by '\n'
	hasData    bool
	event      []byte
	id         []byte // last event id: kept across events, as EventSource does
	dispatched bool   // data and event belong to the event returned last

	closing []byte // the closing comment's text after ": close ", nil before one
}

// line consumes one line without its line end and reports whether it
// dispatched an event: then data, event and id hold it until the next
// call. An event without data is not dispatched (as EventSource does).
// Comments (the heartbeat ": hb") dispatch nothing; the gateway's closing
// comment is kept.
func (p *sseEvents) line(l []byte) bool {
	if p.dispatched {
		p.data, p.event, p.dispatched = p.data[:0], p.event[:0], false
	}
	if len(l) == 0 {
		if !p.hasData {
			p.event = p.event[:0]
			return false
		}
		p.hasData, p.dispatched = false, true
		return true
	}
	if l[0] == ':' {
		if rest, ok := bytes.CutPrefix(l, []byte(": close ")); ok {
			p.closing = append(p.closing[:0], rest...)
		}
		return false
	}
	field, value := l, []byte(nil)
	if i := bytes.IndexByte(l, ':'); i >= 0 {
		field, value = l[:i], l[i+1:]
		value = bytes.TrimPrefix(value, []byte(" "))
	}
	switch string(field) {
	case "data":
		if p.hasData {
			p.data = append(p.data, '\n')
		}
		p.hasData = true
		p.data = append(p.data, value...)
	case "event":
		p.event = append(p.event[:0], value...)
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			p.id = append(p.id[:0], value...)
		}
	}
	// retry (EventSource's reconnection delay) and unknown fields are
	// ignored, as the format requires.
	return false
}

// closeReason maps the gateway's closing comment (PROTOCOL.md "Server-Sent
// Events") to the WebSocket close code of the same reason.
func closeReason(comment []byte) *CloseError {
	reason, text, _ := bytes.Cut(comment, []byte(" "))
	code := 0
	switch string(reason) {
	case "normal":
		code = 1000
	case "going_away":
		code = 1001
	case "policy":
		code = 1008
	case "too_big":
		code = 1009
	case "try_again_later":
		code = 1013
	}
	return &CloseError{Code: code, Reason: string(text)}
}

// sseConn is the client side of one GET /sse stream: one reader goroutine
// calls ReadMessage; Close may come from any goroutine.
type sseConn struct {
	nc   net.Conn
	body *bufio.Reader // the response body
	line []byte        // a line longer than the read buffer, assembled
	p    sseEvents
}

// dialSSE opens the stream at u (http:// or https://) through d; it
// returns once the response headers arrived, before ctx ends. A refusal is
// a *DialError as for /ws.
func dialSSE(ctx context.Context, d *net.Dialer, u *url.URL) (*sseConn, error) {
	nc, err := dialConn(ctx, d, u, u.Scheme == "https")
	if err != nil {
		return nil, err
	}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, fmt.Errorf("write request: %w", err)
	}
	br := bufio.NewReaderSize(nc, readBufSize)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		nc.Close()
		return nil, refusal(resp)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		nc.Close()
		return nil, fmt.Errorf("stream: Content-Type %q, want text/event-stream", resp.Header.Get("Content-Type"))
	}
	_ = nc.SetDeadline(time.Time{})
	// resp.Body reads the body as the response frames it (the gateway's
	// stream has no length and ends with the connection), and a second
	// small buffer finds the lines.
	return &sseConn{nc: nc, body: bufio.NewReaderSize(resp.Body, readBufSize)}, nil
}

// ReadMessage returns the data of the next event: a frame's JSON. The end
// of the stream after the gateway's closing comment is a *CloseError with
// the reason's WebSocket close code.
func (c *sseConn) ReadMessage() ([]byte, error) {
	for {
		l, err := c.readLine()
		if err != nil {
			if c.p.closing != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
				return nil, closeReason(c.p.closing)
			}
			return nil, err
		}
		if c.p.line(l) {
			return c.p.data, nil
		}
	}
}

// readLine returns the next line without its line end.
func (c *sseConn) readLine() ([]byte, error) {
	l, err := c.body.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		c.line = append(c.line[:0], l...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(c.line) > maxMessage {
				return nil, fmt.Errorf("stream: line over %d bytes", maxMessage)
			}
			l, err = c.body.ReadSlice('\n')
			c.line = append(c.line, l...)
		}
		l = c.line
	}
	if err != nil {
		if err == io.EOF && len(l) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	l = l[:len(l)-1]
	return bytes.TrimSuffix(l, []byte("\r")), nil
}

// SetReadDeadline bounds the reads that follow.
func (c *sseConn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// Close ends the stream (a client leaves an event stream by closing it).
func (c *sseConn) Close() { _ = c.nc.Close() }

// CloseNow is Close.
func (c *sseConn) CloseNow() { _ = c.nc.Close() }
