package browser_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"orderpush/gateway/web"
	"orderpush/pkg/wire"
	"orderpush/scripts/launch"
)

// These tests run the dashboard against a scripted gateway and order API, so
// each protocol corner case (duplicates, resume with since, resync, refused
// tokens, backoff) is produced exactly, which a real stack does only by
// chance. The page is served by the real web.Handler, headers and all.

// fakeGateway serves the dashboard, /ws and the order API paths the page
// calls, and lets the test play the server's side of each socket.
type fakeGateway struct {
	t     *testing.T
	srv   *httptest.Server
	conns chan *fakeConn
	sses  chan *fakeSSE

	mu         sync.Mutex
	refuse     int             // >0: refuse the upgrade with this status; guarded by mu
	attempts   []time.Time     // upgrade attempts; guarded by mu
	pending    []wire.Order    // what GET .../orders answers; guarded by mu
	listCalls  int             // guarded by mu
	processed  []string        // orderNos of POST .../process; guarded by mu
	seenHTTP   []string        // orderNos of POST .../seen; guarded by mu
	acksHTTP   []uint64        // seqs of POST .../ack; guarded by mu
	auth       map[string]bool // Authorization headers seen on the API; guarded by mu
	refuseSSE  int             // >0: refuse /sse with this status; guarded by mu
	retryAfter string          // Retry-After of a refusal; guarded by mu
}

// fakeConn is one socket the page opened; frames holds what the page sent
// on it (acks, seen, pings), in order.
type fakeConn struct {
	c      *websocket.Conn
	since  string
	token  string
	batch  bool
	ctx    context.Context
	frames chan map[string]any
}

func newFakeGateway(t *testing.T) *fakeGateway {
	f := &fakeGateway{t: t, conns: make(chan *fakeConn, 16), sses: make(chan *fakeSSE, 16), auth: map[string]bool{}}
	page, err := web.New(web.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", f.serveWS)
	mux.HandleFunc("GET /sse", f.serveSSE)
	mux.HandleFunc("GET /api/merchants/{id}/orders", f.serveList)
	mux.HandleFunc("POST /api/orders/{no}/process", f.serveProcess)
	mux.HandleFunc("POST /api/orders/{no}/seen", f.serveSeen)
	mux.HandleFunc("POST /api/merchants/{id}/ack", f.serveAck)
	mux.HandleFunc("GET /client-test.html", serveClientTestPage)
	mux.Handle("/", page)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGateway) serveWS(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") == "" {
		// The page's probe after a failed connection: answer as the
		// gateway would before an upgrade.
		f.mu.Lock()
		status, retryAfter := f.refuse, f.retryAfter
		f.mu.Unlock()
		switch status {
		case 0:
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
		case http.StatusUnauthorized:
			writeError(w, status, "unauthorized", "token is expired")
		default:
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			writeError(w, status, "unavailable", "refused by the test")
		}
		return
	}
	f.mu.Lock()
	f.attempts = append(f.attempts, time.Now())
	status, retryAfter := f.refuse, f.retryAfter
	f.mu.Unlock()
	if status != 0 {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		writeError(w, status, "unavailable", "refused by the test")
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		f.t.Errorf("accept: %v", err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	q := r.URL.Query()
	fc := &fakeConn{c: c, since: q.Get("since"), token: q.Get("token"), batch: q.Get("batch") == "1", ctx: ctx, frames: make(chan map[string]any, 1024)}
	f.conns <- fc
	defer cancel()
	for {
		_, b, err := c.Read(context.Background())
		if err != nil {
			return
		}
		var m map[string]any
		if json.Unmarshal(b, &m) != nil {
			f.t.Errorf("the page sent %q, not a JSON frame", b)
			continue
		}
		select {
		case fc.frames <- m:
		default:
		}
	}
}

// fakeSSE is one /sse stream the page opened.
type fakeSSE struct {
	w     http.ResponseWriter
	since string
	token string
	done  chan struct{} // closed by end
	ended chan struct{} // closed when the handler returned
}

func (f *fakeGateway) serveSSE(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	status := f.refuseSSE
	f.mu.Unlock()
	if status != 0 {
		writeError(w, status, "unauthorized", "refused by the test")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	s := &fakeSSE{w: w, since: r.URL.Query().Get("since"), token: r.URL.Query().Get("token"), done: make(chan struct{}), ended: make(chan struct{})}
	defer close(s.ended)
	f.sses <- s
	select {
	case <-s.done:
	case <-r.Context().Done():
	}
}

// send writes one frame as an SSE event (PROTOCOL.md, "Other transports"),
// split over two writes to exercise the page's parser.
func (s *fakeSSE) send(t *testing.T, frame []byte) {
	t.Helper()
	var head struct {
		Event string  `json:"event"`
		Seq   *uint64 `json:"seq"`
	}
	if err := json.Unmarshal(frame, &head); err != nil {
		t.Fatal(err)
	}
	msg := ""
	if head.Seq != nil {
		msg = fmt.Sprintf("id: %d\r\n", *head.Seq)
	}
	msg += "event: " + head.Event + "\r\ndata: " + string(frame) + "\r\n\r\n"
	half := len(msg) / 2
	for _, part := range []string{": heartbeat\n\n" + msg[:half], msg[half:]} {
		if _, err := io.WriteString(s.w, part); err != nil {
			t.Fatalf("sse write: %v", err)
		}
		s.w.(http.Flusher).Flush()
	}
}

// end closes the stream from the server's side.
func (s *fakeSSE) end() {
	close(s.done)
	<-s.ended
}

func (f *fakeGateway) acceptSSE() *fakeSSE {
	f.t.Helper()
	select {
	case s := <-f.sses:
		return s
	case <-time.After(15 * time.Second):
		f.t.Fatal("the page opened no SSE stream within 15 s")
		return nil
	}
}

// nextFrame waits for the next frame the page sent on c with the given
// event, skipping others (pings).
func (c *fakeConn) nextFrame(t *testing.T, event string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-c.frames:
			if m["event"] == event {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q frame from the page within %s", event, timeout)
			return nil
		}
	}
}

func (f *fakeGateway) serveSeen(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.seenHTTP = append(f.seenHTTP, r.PathValue("no"))
	f.auth[r.Header.Get("Authorization")] = true
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(order(r.PathValue("no"), 1, wire.StatusPending))
}

func (f *fakeGateway) serveAck(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Seq == 0 {
		writeError(w, http.StatusBadRequest, "invalid_field", "seq")
		return
	}
	f.mu.Lock()
	f.acksHTTP = append(f.acksHTTP, body.Seq)
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(wire.NewErrorBody(code, msg))
}

func (f *fakeGateway) serveList(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.listCalls++
	f.auth[r.Header.Get("Authorization")] = true
	orders := append([]wire.Order{}, f.pending...)
	f.mu.Unlock()
	if r.URL.Query().Get("status") != "pending" {
		f.t.Errorf("list without status=pending: %s", r.URL)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"orders": orders, "next": ""})
}

func (f *fakeGateway) serveProcess(w http.ResponseWriter, r *http.Request) {
	no := r.PathValue("no")
	f.mu.Lock()
	f.processed = append(f.processed, no)
	f.auth[r.Header.Get("Authorization")] = true
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(order(no, 1, wire.StatusProcessed))
}

func (f *fakeGateway) setPending(orders ...wire.Order) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending = orders
}

func (f *fakeGateway) setRefuse(status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuse = status
}

// accept waits for the page's next socket.
func (f *fakeGateway) accept() *fakeConn {
	f.t.Helper()
	select {
	case c := <-f.conns:
		return c
	case <-time.After(15 * time.Second):
		f.t.Fatal("the page opened no socket within 15 s")
		return nil
	}
}

func (c *fakeConn) send(t *testing.T, frame []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageText, frame); err != nil {
		t.Fatalf("send %s: %v", frame, err)
	}
}

func hello(node string, seq uint64, sum int64) []byte {
	return wire.MustEncode(wire.EventHello, 0, 0, wire.HelloData{ConnID: "c-" + node, MerchantID: "m1", Node: node, Seq: seq, OrderSum: sum})
}

func resync(node string, seq uint64, sum int64) []byte {
	return wire.MustEncode(wire.EventResync, 0, 0, wire.HelloData{ConnID: "c-" + node, MerchantID: "m1", Node: node, Seq: seq, OrderSum: sum})
}

func order(no string, minute int, status string) wire.Order {
	return wire.Order{
		OrderNo: no, MerchantID: "m1", UserID: "u1", Date: "2026-11-26", Price: wire.Cents(1000 + minute),
		Status: status, CreatedAt: time.Date(2026, 11, 26, 10, minute, 0, 0, time.UTC),
	}
}

func orderFrame(seq uint64, sum int64, o wire.Order) []byte {
	return wire.MustEncode(wire.EventOrder, seq, 0, wire.OrderData{OrderSum: sum, Msg: wire.NewOrderMsg, Order: o})
}

func processedFrame(seq uint64, sum int64, o wire.Order) []byte {
	o.Status = wire.StatusProcessed
	return wire.MustEncode(wire.EventOrderProcessed, seq, 0, wire.OrderData{OrderSum: sum, Order: o})
}

func merchantToken() string {
	return launch.MintToken([]byte(launch.NewSecret()), "merchant", "m1", time.Hour)
}

func TestDashboardAppliesEventsOnceAndResumesWithSince(t *testing.T) {
	t.Parallel()
	f := newFakeGateway(t)
	b := startBrowser(t)
	ctx := tab(t, b)
	tok := merchantToken()
	do(t, ctx, chromedp.Navigate(f.srv.URL+"/?token="+tok))

	c1 := f.accept()
	if c1.since != "" {
		t.Fatalf("first socket sent since=%s", c1.since)
	}
	if u := eval[string](t, ctx, `location.href`); strings.Contains(u, "token") {
		t.Errorf("the token stays in the address bar: %s", u)
	}
	c1.send(t, hello("gw-a", 0, 0))
	waitJS(t, ctx, "live on gw-a", `document.getElementById('conn').dataset.state === 'live' && document.getElementById('node').textContent === 'gw-a'`, 5*time.Second)

	o1, o2, o3 := order("u1-1", 1, wire.StatusPending), order("u1-2", 2, wire.StatusPending), order("u1-3", 3, wire.StatusPending)
	c1.send(t, orderFrame(1, 1, o1))
	c1.send(t, orderFrame(2, 2, o2))
	c1.send(t, orderFrame(2, 2, o2)) // duplicate: same seq again
	c1.send(t, orderFrame(1, 1, o1)) // stale
	waitJS(t, ctx, "two orders and two duplicates", countIs(2)+` && document.body.dataset.dups === '2'`, 5*time.Second)
	if got := assertNoDuplicateRows(t, ctx); strings.Join(got, ",") != "u1-2,u1-1" {
		t.Fatalf("rows %v, want newest first u1-2,u1-1", got)
	}
	toast := text(t, ctx, "toasts")
	if !strings.Contains(toast, wire.NewOrderMsg) || !strings.Contains(toast, "New order received") {
		t.Errorf("toast %q lacks the Chinese message or the English line", toast)
	}
	if chimes := eval[string](t, ctx, `document.body.dataset.chimes`); chimes != "1" {
		t.Errorf("chimed %s times for a burst of two orders, want 1", chimes)
	}
	waitJS(t, ctx, "two unseen orders", `document.body.dataset.unseen === '2' && document.querySelectorAll('.order.unseen').length === 2`, 5*time.Second)
	for got := 0; got != 2; {
		got = ackSeq(t, c1.nextFrame(t, "ack", 5*time.Second)) // 1, then 2 at most 250 ms later
	}
	// "Got it" on one: a seen frame on the socket; the other stays unseen.
	do(t, ctx, chromedp.Click(chromedp.CSS(`.order[data-order-no="u1-2"] .got-it`)))
	if m := c1.nextFrame(t, "seen", 5*time.Second); fmt.Sprint(m["data"]) != "map[orderNo:u1-2]" {
		t.Fatalf("seen frame %v", m)
	}
	waitJS(t, ctx, "one unseen order", `document.body.dataset.unseen === '1' && !document.querySelector('.order[data-order-no="u1-2"]').classList.contains('unseen')`, 5*time.Second)

	// The replica goes away; the page comes back with since=2, and the
	// replay plus a duplicate of an event it already has yields one row.
	if err := c1.c.Close(websocket.StatusGoingAway, "draining"); err != nil {
		t.Logf("close: %v", err)
	}
	c2 := f.accept()
	if c2.since != "2" {
		t.Fatalf("reconnected with since=%q, want 2", c2.since)
	}
	c2.send(t, hello("gw-b", 3, 3))
	c2.send(t, orderFrame(2, 2, o2))
	c2.send(t, orderFrame(3, 3, o3))
	waitJS(t, ctx, "resumed on gw-b with 3 orders", countIs(3)+` && document.getElementById('node').textContent === 'gw-b'`, 5*time.Second)
	if got := assertNoDuplicateRows(t, ctx); strings.Join(got, ",") != "u1-3,u1-2,u1-1" {
		t.Fatalf("rows %v after resume", got)
	}
	if sync := eval[string](t, ctx, `document.getElementById('sync').dataset.last`); !strings.Contains(sync, "Resumed") {
		t.Errorf("no resumed flag: %q", sync)
	}

	// Mark processed: the API call carries the token; the row goes at once,
	// the count when the event arrives, and a replayed event changes nothing.
	do(t, ctx, chromedp.Click(chromedp.CSS(`.order[data-order-no="u1-1"] .process`)))
	waitJS(t, ctx, "row u1-1 gone", `!document.querySelector('.order[data-order-no="u1-1"]')`, 5*time.Second)
	c2.send(t, processedFrame(4, 2, o1))
	c2.send(t, processedFrame(4, 2, o1))
	waitJS(t, ctx, "count 2", countIs(2), 5*time.Second)
	f.mu.Lock()
	processed, authOK := f.processed, f.auth["Bearer "+tok]
	f.mu.Unlock()
	if len(processed) != 1 || processed[0] != "u1-1" || !authOK {
		t.Fatalf("process calls %v (bearer token seen: %v)", processed, authOK)
	}
	if got := assertNoDuplicateRows(t, ctx); strings.Join(got, ",") != "u1-3,u1-2" {
		t.Fatalf("rows %v after processing u1-1", got)
	}
}

func TestDashboardResyncReplacesState(t *testing.T) {
	t.Parallel()
	f := newFakeGateway(t)
	b := startBrowser(t)
	ctx := tab(t, b)
	f.setPending(order("u1-old", 1, wire.StatusPending))
	do(t, ctx, chromedp.Navigate(f.srv.URL+"/?token="+merchantToken()))
	c := f.accept()
	c.send(t, hello("gw-a", 5, 1))
	waitJS(t, ctx, "the listed order", `!!document.querySelector('.order[data-order-no="u1-old"]') && `+countIs(1), 5*time.Second)

	// A resync says: forget what you hold. The list is fetched again.
	f.setPending(order("u1-x", 2, wire.StatusPending), order("u1-y", 3, wire.StatusPending))
	c.send(t, resync("gw-a", 9, 2))
	waitJS(t, ctx, "the new state", countIs(2)+` && document.querySelectorAll('#orders .order').length === 2`, 5*time.Second)
	if got := assertNoDuplicateRows(t, ctx); !sameSet(got, []string{"u1-x", "u1-y"}) {
		t.Fatalf("rows %v after resync, want u1-x u1-y", got)
	}
	if s := eval[string](t, ctx, `document.getElementById('sync').dataset.last`); !strings.Contains(s, "Resynced") {
		t.Errorf("no resynced flag: %q", s)
	}
	// The next live event continues from the resync's seq.
	c.send(t, orderFrame(10, 3, order("u1-z", 4, wire.StatusPending)))
	waitJS(t, ctx, "the order after resync", countIs(3)+` && document.getElementById('seq').textContent === '10'`, 5*time.Second)
	f.mu.Lock()
	calls := f.listCalls
	f.mu.Unlock()
	if calls != 2 {
		t.Errorf("list fetched %d times, want 2 (hello, resync)", calls)
	}
}

func TestDashboardSignInAndRefusedToken(t *testing.T) {
	t.Parallel()
	f := newFakeGateway(t)
	b := startBrowser(t)
	ctx := tab(t, b)

	// No token: the sign-in form. A member token is refused on the spot.
	do(t, ctx, chromedp.Navigate(f.srv.URL+"/"))
	waitJS(t, ctx, "the sign-in form", `!document.getElementById('signin').hidden`, 5*time.Second)
	member := launch.MintToken([]byte(launch.NewSecret()), "member", "u1", time.Hour)
	do(t, ctx, chromedp.SetValue(chromedp.ID("token-input"), member), chromedp.Click(chromedp.CSS(`#signin-form button[type=submit]`)))
	waitJS(t, ctx, "the role error", `document.getElementById('signin-error').textContent.includes('merchant token')`, 5*time.Second)

	// A merchant token the gateway refuses (401 before the upgrade): back to
	// the sign-in form with the gateway's reason, no reconnect loop.
	f.setRefuse(http.StatusUnauthorized)
	do(t, ctx, chromedp.SetValue(chromedp.ID("token-input"), merchantToken()), chromedp.Click(chromedp.CSS(`#signin-form button[type=submit]`)))
	waitJS(t, ctx, "the gateway's reason", `!document.getElementById('signin').hidden && document.getElementById('signin-error').textContent.includes('token is expired')`, 10*time.Second)

	// A good one: pasted, connected, and kept for the next visit.
	f.setRefuse(0)
	tok := merchantToken()
	do(t, ctx, chromedp.SetValue(chromedp.ID("token-input"), tok), chromedp.Click(chromedp.CSS(`#signin-form button[type=submit]`)))
	f.accept().send(t, hello("gw-a", 0, 0))
	waitJS(t, ctx, "live", `document.getElementById('conn').dataset.state === 'live' && document.getElementById('signin').hidden`, 5*time.Second)
	do(t, ctx, chromedp.Reload())
	f.accept().send(t, hello("gw-b", 0, 0))
	waitJS(t, ctx, "live again after reload", `document.getElementById('node').textContent === 'gw-b'`, 5*time.Second)
}

func TestDashboardBacksOffExponentiallyWithJitter(t *testing.T) {
	t.Parallel()
	f := newFakeGateway(t)
	b := startBrowser(t)
	ctx := tab(t, b)
	f.setRefuse(http.StatusServiceUnavailable) // e.g. every replica draining
	do(t, ctx, chromedp.Navigate(f.srv.URL+"/?token="+merchantToken()))
	waitJS(t, ctx, "the reconnecting state", `document.getElementById('conn').dataset.state === 'reconnecting'`, 5*time.Second)

	attempts := f.waitAttempts(t, 5, 30*time.Second)
	// Attempt k+1 comes after a random delay in [0, step] with step =
	// 500 ms * 2^k (client.js: full jitter; TestClientBacksOffExponentially
	// checks the steps exactly), plus the failed handshake and the page's
	// probe request on a busy machine.
	for k := 0; k < 4; k++ {
		gap := attempts[k+1].Sub(attempts[k])
		step := 500 * time.Millisecond << k
		if gap > step+1500*time.Millisecond {
			t.Errorf("gap %d: %s, want at most %s (plus handshake time)", k, gap, step)
		}
	}
	waitJS(t, ctx, "the countdown", `document.getElementById('conn-text').textContent.startsWith('Reconnecting in')`, 10*time.Second)

	// Once a replica takes it, the page is live and the backoff resets.
	f.setRefuse(0)
	c := f.accept()
	c.send(t, hello("gw-a", 0, 0))
	waitJS(t, ctx, "live", `document.getElementById('conn').dataset.state === 'live'`, 20*time.Second)
	_ = c.c.Close(websocket.StatusGoingAway, "")
	start := time.Now()
	f.accept()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("first retry after a live connection took %s, want the base step", d)
	}
}
