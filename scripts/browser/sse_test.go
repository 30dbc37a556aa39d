package browser_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"orderpush/pkg/redistest"
	"orderpush/scripts/launch"
)

// streamProxy passes everything to one gateway, which the test may
// change, and records what it sees of /sse: each request's Last-Event-ID
// and answer status, and the streamed bytes (the comments EventSource
// does not show the page).
type streamProxy struct {
	srv *httptest.Server
	rp  *httputil.ReverseProxy

	mu       sync.Mutex
	target   *url.URL     // guarded by mu
	lastIDs  []string     // Last-Event-ID of each /sse request; guarded by mu
	statuses []int        // status of each /sse answer; guarded by mu
	streamed bytes.Buffer // guarded by mu
}

func newStreamProxy(t *testing.T, to *launch.Service) *streamProxy {
	p := &streamProxy{}
	p.point(t, to)
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			p.mu.Lock()
			r.SetURL(p.target)
			if r.In.URL.Path == "/sse" {
				p.lastIDs = append(p.lastIDs, r.In.Header.Get("Last-Event-ID"))
			}
			p.mu.Unlock()
		},
		ModifyResponse: func(resp *http.Response) error {
			if resp.Request.URL.Path != "/sse" {
				return nil
			}
			p.mu.Lock()
			p.statuses = append(p.statuses, resp.StatusCode)
			p.mu.Unlock()
			resp.Body = &teeBody{ReadCloser: resp.Body, p: p}
			return nil
		},
	}
	p.srv = httptest.NewServer(p.rp)
	t.Cleanup(p.srv.Close)
	return p
}

// point sends every request from now on to gateway g.
func (p *streamProxy) point(t *testing.T, g *launch.Service) {
	u, err := url.Parse(g.URL)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.target = u
	p.mu.Unlock()
}

func (p *streamProxy) seen() (lastIDs []string, statuses []int, streamed string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lastIDs...), append([]int(nil), p.statuses...), p.streamed.String()
}

type teeBody struct {
	io.ReadCloser
	p *streamProxy
}

func (b *teeBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	b.p.mu.Lock()
	b.p.streamed.Write(buf[:n])
	b.p.mu.Unlock()
	return n, err
}

// openEventSource starts the browser's own EventSource on /sse of the
// page's origin; window[name] collects its events (name, lastEventId,
// data), opens and errors.
func openEventSource(name, tok string) string {
	return fmt.Sprintf(`(() => {
  const st = window[%[1]q] = {events: [], opens: 0, errors: 0};
  const src = st.src = new EventSource('/sse?token=' + encodeURIComponent(%[2]q));
  for (const ev of ['hello', 'resync', 'order', 'order.processed']) {
    src.addEventListener(ev, (e) => st.events.push({name: ev, id: e.lastEventId, data: JSON.parse(e.data)}));
  }
  src.onopen = () => { st.opens++; };
  src.onerror = () => { st.errors++; st.state = src.readyState; };
  return true;
})()`, name, tok)
}

// TestEventSourceOnRealGateways: Chromium's EventSource on a real
// gateway's /sse, from a page of the gateway's origin (through a
// pass-through proxy that lets the test move the origin to the other
// replica): ordered events carrying their seq as id; when the replica
// restarts (drains) EventSource reconnects by itself with Last-Event-ID and
// gets the missed events, nothing lost or twice; heartbeat comments flow;
// a bad token is refused with an error and no event.
func TestEventSourceOnRealGateways(t *testing.T) {
	t.Parallel()
	sys := startSystem(t, 2)
	p := newStreamProxy(t, sys.Gateways[0])
	merchant := redistest.Unique("web-es")
	b := startBrowser(t)
	ctx := tab(t, b)
	do(t, ctx, chromedp.Navigate(p.srv.URL+"/")) // the dashboard's page: the gateway's origin
	eval[bool](t, ctx, openEventSource("es", sys.Token("merchant", merchant)))
	waitJS(t, ctx, "hello", `window.es.events.length === 1 && window.es.events[0].name === 'hello' && window.es.events[0].id === ''`, 20*time.Second)
	if node := eval[string](t, ctx, `window.es.events[0].data.data.node`); node != sys.Gateways[0].Node {
		t.Fatalf("stream on %q, want %q", node, sys.Gateways[0].Node)
	}

	const orderIDs = `window.es.events.filter(e => e.name === 'order').map(e => e.id + ':' + e.data.seq).join()`
	for i := range 3 {
		placeOn(t, sys, merchant, fmt.Sprint(10+i))
	}
	waitJS(t, ctx, "three orders with ids", orderIDs+` === '1:1,2:2,3:3'`, 10*time.Second)

	// The replica restarts: the origin now leads to the other one, the
	// stream ends with the drain, and EventSource comes back on its own.
	p.point(t, sys.Gateways[1])
	sys.Gateways[0].Proc.Signal(syscall.SIGTERM)
	for i := range 2 {
		placeOn(t, sys, merchant, fmt.Sprint(20+i))
	}
	waitJS(t, ctx, "five orders once each, in order", orderIDs+` === '1:1,2:2,3:3,4:4,5:5'`, 30*time.Second)
	waitJS(t, ctx, "the second hello, from the other replica", `window.es.events.filter(e => e.name === 'hello').length === 2 && window.es.opens === 2`, 10*time.Second)
	if node := eval[string](t, ctx, `window.es.events.filter(e => e.name === 'hello')[1].data.data.node`); node != sys.Gateways[1].Node {
		t.Fatalf("resumed on %q, want %q", node, sys.Gateways[1].Node)
	}
	lastIDs, _, _ := p.seen()
	if len(lastIDs) != 2 || lastIDs[0] != "" || lastIDs[1] == "" {
		t.Fatalf("Last-Event-ID of the /sse requests %q: want none, then the last id seen", lastIDs)
	}
	if n := eval[int](t, ctx, `window.es.events.filter(e => e.name === 'resync').length`); n != 0 {
		t.Fatalf("%d resyncs", n)
	}

	// Heartbeats: comments, which only the bytes on the wire show (15 s
	// when nothing else is written).
	deadline := time.Now().Add(40 * time.Second)
	for {
		_, _, streamed := p.seen()
		if strings.Contains(streamed, "\n: hb\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no heartbeat comment in the stream within 40 s:\n%s", streamed)
		}
		time.Sleep(100 * time.Millisecond) // poll interval, bounded by the deadline
	}

	// A refused token: an error, the EventSource closed, no event.
	eval[bool](t, ctx, openEventSource("bad", "not-a-token"))
	waitJS(t, ctx, "the refusal", `window.bad.errors > 0 && window.bad.src.readyState === EventSource.CLOSED`, 10*time.Second)
	if n := eval[int](t, ctx, `window.bad.events.length + window.bad.opens`); n != 0 {
		t.Fatalf("the refused EventSource opened or got %d events", n)
	}
	if _, statuses, _ := p.seen(); statuses[len(statuses)-1] != http.StatusUnauthorized {
		t.Fatalf("statuses of /sse %v, want 401 last", statuses)
	}
	eval[bool](t, ctx, `window.es.src.close(), true`)
}
