package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"orderpush/gateway/internal/metrics"
	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// sseEvent is one event of a stream, or a comment (Comment set).
type sseEvent struct {
	ID, Event, Data, Comment string
}

// sseClient reads an event stream in the background.
type sseClient struct {
	resp *http.Response
	mu   sync.Mutex
	evs  []sseEvent
	done chan struct{}
	err  error
}

func sseDial(t *testing.T, base, tok string, header http.Header) (*sseClient, *http.Response) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/sse?token="+tok, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp
	}
	c := &sseClient{resp: resp, done: make(chan struct{})}
	t.Cleanup(func() { resp.Body.Close(); <-c.done })
	go c.read()
	return c, resp
}

// read parses the stream (text/event-stream: fields until a blank line).
func (c *sseClient) read() {
	defer close(c.done)
	br := bufio.NewReader(c.resp.Body)
	var ev sseEvent
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.Event != "" || data != nil || ev.Comment != "" {
				ev.Data = strings.Join(data, "\n")
				c.mu.Lock()
				c.evs = append(c.evs, ev)
				c.mu.Unlock()
			}
			ev, data = sseEvent{}, nil
		case strings.HasPrefix(line, ":"):
			ev.Comment = strings.TrimSpace(line[1:])
		default:
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimPrefix(v, " ")
			switch k {
			case "id":
				ev.ID = v
			case "event":
				ev.Event = v
			case "data":
				data = append(data, v)
			}
		}
	}
}

func (c *sseClient) events() []sseEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sseEvent(nil), c.evs...)
}

// wait waits until cond holds for the events so far.
func (c *sseClient) wait(t *testing.T, what string, cond func([]sseEvent) bool) []sseEvent {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := c.events()
		if cond(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s; got %+v", what, evs)
		}
		time.Sleep(5 * time.Millisecond) // poll interval, bounded by the deadline
	}
}

// seqs are the ids of the stream's sequenced events, checked against their
// data.
func seqs(t *testing.T, evs []sseEvent) []uint64 {
	t.Helper()
	var out []uint64
	for _, e := range evs {
		if e.ID == "" {
			continue
		}
		var h wire.Head
		if err := json.Unmarshal([]byte(e.Data), &h); err != nil || strconv.FormatUint(h.Seq, 10) != e.ID || h.Event != e.Event {
			t.Fatalf("event %+v: data does not match id/event (%v)", e, err)
		}
		out = append(out, h.Seq)
	}
	return out
}

func lastSeq(evs []sseEvent) uint64 {
	var n uint64
	for _, e := range evs {
		if v, err := strconv.ParseUint(e.ID, 10, 64); err == nil {
			n = v
		}
	}
	return n
}

// TestSSEStream: hello first (no id), then each order as one event with
// id = seq, event = the frame's event and data = the frame byte for byte;
// heartbeat comments; proxy-friendly headers; the connection counted as
// transport sse.
func TestSSEStream(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	g := startGW(t, url, func(c *Config) { c.SSEHeartbeat = 100 * time.Millisecond })
	mid := redistest.Unique("m")
	c, resp := sseDial(t, g.URL, merchantToken(t, mid), nil)
	if c == nil {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for k, want := range map[string]string{"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != want {
			t.Fatalf("%s: %q, want %q", k, got, want)
		}
	}
	if resp.Header.Get("Content-Encoding") != "" {
		t.Fatal("compressed stream")
	}
	c.wait(t, "hello", func(evs []sseEvent) bool { return len(evs) > 0 })
	if first := c.events()[0]; first.Event != wire.EventHello || first.ID != "" {
		t.Fatalf("first event %+v", first)
	}
	p := newPublisher(t, newRedis(t, url), mid)
	var frames []string
	for range 5 {
		seq, sum, f := p.next()
		frames = append(frames, string(f))
		if _, err := p.store.Publish(context.Background(), mid, seq, sum, f); err != nil {
			t.Fatal(err)
		}
	}
	evs := c.wait(t, "orders", func(evs []sseEvent) bool { return lastSeq(evs) == 5 })
	if got := seqs(t, evs); fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Fatalf("seqs %v", got)
	}
	i := 0
	for _, e := range evs {
		if e.ID != "" {
			if e.Data != frames[i] || e.Event != wire.EventOrder {
				t.Fatalf("event %d: %q, want the frame %q", i, e.Data, frames[i])
			}
			i++
		}
	}
	c.wait(t, "heartbeat", func(evs []sseEvent) bool {
		for _, e := range evs[1:] {
			if e.Comment == "hb" {
				return true
			}
		}
		return false
	})
	if n := g.metric(g.srv.m.ConnectionsOpen.WithLabelValues(metrics.TransportSSE)); n != 1 {
		t.Fatalf("sse connections open %v", n)
	}
}

// TestSSEResumeAcrossRestart: a stream ends with its replica's drain; the
// client resumes on another replica with Last-Event-ID and gets exactly
// what it missed, in order, then live events.
func TestSSEResumeAcrossRestart(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	a, b := startGW(t, url), startGW(t, url)
	mid := redistest.Unique("m")
	tok := merchantToken(t, mid)
	p := newPublisher(t, newRedis(t, url), mid)
	c1, _ := sseDial(t, a.URL, tok, nil)
	c1.wait(t, "hello", func(evs []sseEvent) bool { return len(evs) > 0 })
	p.publish(3)
	c1.wait(t, "first orders", func(evs []sseEvent) bool { return lastSeq(evs) == 3 })
	a.Stop() // drain: the stream ends
	select {
	case <-c1.done:
	case <-time.After(10 * time.Second):
		t.Fatal("stream still open after the drain")
	}
	evs := c1.events()
	if last := evs[len(evs)-1]; last.Comment != "close going_away going away" {
		t.Fatalf("stream ended with %+v", last)
	}
	p.publish(3) // missed while away
	seen := lastSeq(evs)
	c2, resp := sseDial(t, b.URL, tok, http.Header{"Last-Event-Id": {strconv.FormatUint(seen, 10)}})
	if c2 == nil {
		t.Fatalf("resume: status %d", resp.StatusCode)
	}
	c2.wait(t, "missed orders", func(evs []sseEvent) bool { return lastSeq(evs) == 6 })
	p.publish(2)
	evs = c2.wait(t, "live orders", func(evs []sseEvent) bool { return lastSeq(evs) == 8 })
	if evs[0].Event != wire.EventHello {
		t.Fatalf("first event %+v", evs[0])
	}
	if got := seqs(t, evs); fmt.Sprint(got) != "[4 5 6 7 8]" {
		t.Fatalf("resumed seqs %v", got)
	}
}

// TestSSERefusals: the same refusals as /ws, as HTTP errors before any
// stream starts.
func TestSSERefusals(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	g := startGW(t, url)
	mid := redistest.Unique("m")
	for _, tc := range []struct {
		name, tok string
		header    http.Header
		status    int
		code      string
	}{
		{"no token", "", nil, 401, wire.CodeUnauthorized},
		{"bad token", "x.y.z", nil, 401, wire.CodeUnauthorized},
		{"member token", mint(t, token.RoleMember, "u1", time.Hour), nil, 403, wire.CodeForbidden},
		{"bad Last-Event-ID", merchantToken(t, mid), http.Header{"Last-Event-Id": {"-1"}}, 400, wire.CodeInvalidSince},
	} {
		c, resp := sseDial(t, g.URL, tc.tok, tc.header)
		if c != nil {
			t.Fatalf("%s: stream opened", tc.name)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Error wire.ErrorData `json:"error"`
		}
		if resp.StatusCode != tc.status || json.Unmarshal(body, &e) != nil || e.Error.Code != tc.code {
			t.Fatalf("%s: %d %s, want %d %s", tc.name, resp.StatusCode, body, tc.status, tc.code)
		}
	}
}

// TestSSECORS: a page on an origin ALLOWED_ORIGINS accepts may read the
// stream from another origin (Access-Control-Allow-Origin echoes it, Vary:
// Origin), its preflight for Authorization and Last-Event-ID is answered,
// and an origin outside the list gets neither the stream nor the headers.
func TestSSECORS(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	g := startGW(t, url, func(c *Config) { c.AllowedOrigins = []string{"https://*.shop.example"} })
	tok := merchantToken(t, redistest.Unique("m"))
	const good, bad = "https://a.shop.example", "https://evil.example"

	c, resp := sseDial(t, g.URL, tok, http.Header{"Origin": {good}})
	if c == nil {
		t.Fatalf("allowed origin: status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != good {
		t.Fatalf("Access-Control-Allow-Origin %q, want %q", got, good)
	}
	if resp.Header.Get("Vary") != "Origin" || resp.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("Vary %q, Allow-Credentials %q", resp.Header.Get("Vary"), resp.Header.Get("Access-Control-Allow-Credentials"))
	}
	c.wait(t, "hello", func(evs []sseEvent) bool { return len(evs) > 0 && evs[0].Event == wire.EventHello })

	// A refusal on an allowed origin is readable by the page.
	_, resp = sseDial(t, g.URL, "x.y.z", http.Header{"Origin": {good}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Access-Control-Allow-Origin") != good {
		t.Fatalf("refusal: %d, Access-Control-Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}

	_, resp = sseDial(t, g.URL, tok, http.Header{"Origin": {bad}})
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), wire.CodeOriginNotAllowed) || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("origin outside the list: %d %s, Access-Control-Allow-Origin %q", resp.StatusCode, body, resp.Header.Get("Access-Control-Allow-Origin"))
	}

	for _, tc := range []struct {
		origin string
		status int
	}{{good, http.StatusNoContent}, {bad, http.StatusForbidden}} {
		req, _ := http.NewRequest(http.MethodOptions, g.URL+"/sse", nil)
		req.Header.Set("Origin", tc.origin)
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "authorization,last-event-id")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Fatalf("preflight from %s: %d, want %d", tc.origin, resp.StatusCode, tc.status)
		}
		allow := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
		if tc.status == http.StatusNoContent && (resp.Header.Get("Access-Control-Allow-Origin") != good ||
			!strings.Contains(allow, "authorization") || !strings.Contains(allow, "last-event-id") || resp.Header.Get("Access-Control-Allow-Methods") != "GET") {
			t.Fatalf("preflight answer %v", resp.Header)
		}
	}
}
