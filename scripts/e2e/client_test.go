package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/coder/websocket"

	"orderpush/pkg/wire"
	"orderpush/scripts/launch"
)

// frame is a server frame as a client sees it, with its exact bytes.
type frame struct {
	Event string          `json:"event"`
	Seq   uint64          `json:"seq"`
	TS    int64           `json:"ts"`
	Data  json.RawMessage `json:"data"`
	raw   []byte
}

// orderData is the data of order and order.processed frames; Order stays
// raw so it can be compared with the HTTP body.
type orderData struct {
	OrderSum int64           `json:"orderSum"`
	Msg      string          `json:"msg"`
	Order    json.RawMessage `json:"order"`
}

// socket is one merchant socket of a test.
type socket struct {
	name  string
	gw    *launch.Service
	c     *websocket.Conn
	hello wire.HelloData
}

// dial opens a socket on gw with tok in the query and reads its hello.
func dial(t *testing.T, gw *launch.Service, tok, name string) *socket {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, gw.WS()+"?token="+url.QueryEscape(tok), nil)
	if err != nil {
		status := "no response"
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("%s: dial %s: %v (%s)", name, gw.Name, err, status)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	s := &socket{name: name, gw: gw, c: c}
	f := s.next(t, ctx)
	if f.Event != wire.EventHello {
		t.Fatalf("%s: first frame %s, want hello", name, f.raw)
	}
	if err := json.Unmarshal(f.Data, &s.hello); err != nil {
		t.Fatalf("%s: hello data: %v", name, err)
	}
	return s
}

// next reads one frame; a socket without batch=1 gets one frame a message.
func (s *socket) next(t *testing.T, ctx context.Context) frame {
	t.Helper()
	typ, msg, err := s.c.Read(ctx)
	if err != nil {
		t.Fatalf("%s: read: %v", s.name, err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("%s: got a %v message, want text", s.name, typ)
	}
	var f frame
	if err := json.Unmarshal(msg, &f); err != nil {
		t.Fatalf("%s: frame %q: %v", s.name, msg, err)
	}
	f.raw = msg
	return f
}

func (s *socket) send(t *testing.T, ctx context.Context, v string) {
	t.Helper()
	if err := s.c.Write(ctx, websocket.MessageText, []byte(v)); err != nil {
		t.Fatalf("%s: write: %v", s.name, err)
	}
}

// quiet asserts nothing is queued for the socket: a ping's answer is the
// very next frame. The gateway writes each socket's frames through one
// queue, so a stray frame sent earlier would come before the pong.
func (s *socket) quiet(t *testing.T, ctx context.Context) {
	t.Helper()
	s.send(t, ctx, `{"event":"ping"}`)
	if f := s.next(t, ctx); f.Event != wire.EventPong {
		t.Errorf("%s: got %s where only a pong was due", s.name, f.raw)
		// Drain to the pong so later checks stay aligned.
		for f.Event != wire.EventPong {
			f = s.next(t, ctx)
		}
	}
}

// call does an HTTP request with a bearer token and a JSON body (a string
// sent verbatim, or nil) and returns the status and body.
func call(t *testing.T, method, u, tok string, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = bytes.NewBufferString(body)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, u, err)
		return 0, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("%s %s: read body: %v", method, u, err)
	}
	return resp.StatusCode, b
}

// jsonEqual reports whether a and b hold the same JSON value.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// compact returns b without insignificant white space.
func compact(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("compact %q: %v", b, err)
	}
	return buf.Bytes()
}
