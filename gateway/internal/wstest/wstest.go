// Package wstest is a merchant socket client for tests: it dials the
// gateway, reads frames in the background (splitting batched messages),
// and checks the stream invariants of PROTOCOL.md as frames arrive. A
// Follower reconnects with since after every close, as a real dashboard
// does.
package wstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Frame is one server frame as received.
type Frame struct {
	Event string          `json:"event"`
	Seq   uint64          `json:"seq"`
	TS    int64           `json:"ts"`
	Data  json.RawMessage `json:"data"`
	Raw   []byte          `json:"-"`
	At    time.Time       `json:"-"` // when it was read
}

// Hello is the data of hello and resync frames.
type Hello struct {
	ConnID     string `json:"connId"`
	MerchantID string `json:"merchantId"`
	Node       string `json:"node"`
	Seq        uint64 `json:"seq"`
	OrderSum   int64  `json:"orderSum"`
}

// Hello decodes f's data as hello/resync data.
func (f Frame) Hello() Hello {
	var h Hello
	_ = json.Unmarshal(f.Data, &h)
	return h
}

// URL builds a socket URL for base (http://host:port) with token, and since
// when since >= 0.
func URL(base, tok string, since int64, extra ...string) string {
	u, _ := url.Parse(base)
	u.Scheme = "ws"
	u.Path = "/ws"
	q := url.Values{"token": {tok}}
	if since >= 0 {
		q.Set("since", strconv.FormatInt(since, 10))
	}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Conn is one socket with a background reader.
type Conn struct {
	WS       *websocket.Conn
	Messages int // WebSocket messages read; valid after Done
	lean     bool

	mu     sync.Mutex
	frames []Frame
	notify chan struct{}
	err    error // why reading ended
	endAt  time.Time
	done   chan struct{}
}

// Dial connects and starts reading. A failed upgrade returns the HTTP
// response (status and body) in the error.
func Dial(ctx context.Context, u string, h http.Header) (*Conn, error) {
	return dial(ctx, u, h, false)
}

// DialLean is Dial for long streams: frames keep their event, seq, ts and
// arrival time but not their bytes, so the client's own memory stays small.
func DialLean(ctx context.Context, u string, h http.Header) (*Conn, error) {
	return dial(ctx, u, h, true)
}

func dial(ctx context.Context, u string, h http.Header, lean bool) (*Conn, error) {
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		if resp != nil {
			return nil, &DialError{Status: resp.StatusCode, Err: err}
		}
		return nil, err
	}
	ws.SetReadLimit(-1)
	c := &Conn{WS: ws, lean: lean, notify: make(chan struct{}, 1), done: make(chan struct{})}
	go c.read()
	return c, nil
}

// DialError is a refused upgrade.
type DialError struct {
	Status int
	Err    error
}

func (e *DialError) Error() string { return fmt.Sprintf("dial: HTTP %d: %v", e.Status, e.Err) }

func (c *Conn) read() {
	defer close(c.done)
	n := 0
	for {
		_, b, err := c.WS.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.err, c.endAt = err, time.Now()
			c.Messages = n
			c.mu.Unlock()
			c.signal()
			return
		}
		n++
		now := time.Now()
		var got []Frame
		for _, line := range bytes.Split(b, []byte("\n")) {
			var f Frame
			if err := json.Unmarshal(line, &f); err != nil {
				f = Frame{Event: "!unparsable"}
			}
			f.Raw, f.At = line, now
			if c.lean {
				f.Raw, f.Data = nil, nil
			}
			got = append(got, f)
		}
		c.mu.Lock()
		c.frames = append(c.frames, got...)
		c.mu.Unlock()
		c.signal()
	}
}

func (c *Conn) signal() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// Frames returns a copy of what was received so far.
func (c *Conn) Frames() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Frame(nil), c.frames...)
}

// Done is closed when reading ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why reading ended (nil while open).
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// EndedAt is when reading ended (zero while open).
func (c *Conn) EndedAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endAt
}

// CloseStatus is the close code received, or -1.
func (c *Conn) CloseStatus() websocket.StatusCode { return websocket.CloseStatus(c.Err()) }

// Wait waits until cond holds for the frames received, or the timeout.
func (c *Conn) Wait(timeout time.Duration, cond func([]Frame) bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if cond(c.Frames()) {
			return nil
		}
		select {
		case <-c.notify:
		case <-c.done:
			if cond(c.Frames()) {
				return nil
			}
			return fmt.Errorf("socket ended (%v) before the condition held", c.Err())
		case <-deadline.C:
			return errors.New("timed out waiting for frames")
		}
	}
}

// WaitEvent waits for the n-th (from 1) frame named event and returns it.
func (c *Conn) WaitEvent(timeout time.Duration, event string, n int) (Frame, error) {
	var got Frame
	err := c.Wait(timeout, func(fs []Frame) bool {
		k := 0
		for _, f := range fs {
			if f.Event == event {
				if k++; k == n {
					got = f
					return true
				}
			}
		}
		return false
	})
	return got, err
}

// WaitSeq waits until a frame with seq >= n arrived.
func (c *Conn) WaitSeq(timeout time.Duration, n uint64) error {
	return c.Wait(timeout, func(fs []Frame) bool {
		for i := len(fs) - 1; i >= 0; i-- {
			if fs[i].Seq >= n {
				return true
			}
		}
		return false
	})
}

// WaitClosed waits for the end of reading.
func (c *Conn) WaitClosed(timeout time.Duration) error {
	select {
	case <-c.done:
		return nil
	case <-time.After(timeout):
		return errors.New("socket still open")
	}
}

// Close closes the socket normally and waits for the reader.
func (c *Conn) Close() {
	_ = c.WS.Close(websocket.StatusNormalClosure, "")
	<-c.done
}

// Send writes a text frame.
func (c *Conn) Send(ctx context.Context, b []byte) error {
	return c.WS.Write(ctx, websocket.MessageText, b)
}

// Seqs lists the seqs of merchant events among frames, in arrival order.
func Seqs(fs []Frame) []uint64 {
	var out []uint64
	for _, f := range fs {
		if f.Seq > 0 {
			out = append(out, f.Seq)
		}
	}
	return out
}

// CheckStream checks one connection's frames: hello first, then merchant
// events each exactly one above the previous (starting after start, the
// since given or the hello's seq), and no resync unless allowResync.
func CheckStream(fs []Frame, since int64, allowResync bool) error {
	if len(fs) == 0 {
		return errors.New("no frames")
	}
	if fs[0].Event != "hello" {
		return fmt.Errorf("first frame is %q, want hello", fs[0].Event)
	}
	last := fs[0].Hello().Seq
	if since >= 0 {
		last = uint64(since)
	}
	for i, f := range fs[1:] {
		switch {
		case f.Event == "resync":
			if !allowResync {
				return fmt.Errorf("frame %d: unexpected resync %s", i+1, f.Raw)
			}
			last = f.Hello().Seq
		case f.Event == "!unparsable":
			return fmt.Errorf("frame %d: not JSON: %q", i+1, f.Raw)
		case f.Seq == 0:
		case f.Seq != last+1:
			return fmt.Errorf("frame %d: seq %d after %d", i+1, f.Seq, last)
		default:
			last = f.Seq
		}
	}
	return nil
}
