package browser_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"orderpush/pkg/wire"
	"orderpush/scripts/launch"
)

// Tests of /client.js (gateway/web/static/client.js) on a page of its own,
// against the scripted gateway: close codes, backoff, deduplication, acks
// and the fallback to SSE, each produced exactly.

// clientTestPage loads the client from the gateway like any integrator's
// page and records what it reports. start(opts) connects; opts.rand fixes
// the backoff's random draw (window.rand may change it later); a
// opts.newToken makes getToken answer with it.
const clientTestPage = `<!doctype html><meta charset="utf-8"><title>client.js test</title>
<script type="module">
import { connect, VERSION } from '/client.js';
window.log = []; window.counts = {}; window.states = []; window.tokenAsked = [];
window.start = (o) => {
  const opts = { ...o };
  if (o.rand !== undefined) { window.rand = o.rand; opts.random = () => window.rand; }
  if (o.newToken !== undefined) opts.getToken = async (reason) => { window.tokenAsked.push(reason); return o.newToken; };
  delete opts.rand; delete opts.newToken;
  const c = connect(opts);
  window.client = c;
  for (const name of ['hello', 'resync', 'order', 'order.processed', 'order.seen', 'duplicate', 'gap', 'auth', 'fallback', 'error', 'notice']) {
    c.on(name, (f) => {
      window.log.push({ name, seq: f && f.seq, fresh: f && f.fresh, missed: f && f.missed, orderNo: f && f.data && f.data.order && f.data.order.orderNo });
      window.counts[name] = (window.counts[name] || 0) + 1;
    });
  }
  c.on('state', (s) => window.states.push({ ...s, at: Date.now() }));
  return VERSION;
};
window.seqs = (name) => window.log.filter((e) => e.name === name).map((e) => e.seq);
window.ready = true;
</script>`

func serveClientTestPage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(clientTestPage))
}

// startClient opens the test page in a new tab of b and connects with opts
// (a JS object literal; token is added).
func startClient(t *testing.T, b interface {
	Tab() (context.Context, context.CancelFunc, error)
}, pageURL, tok, opts string) context.Context {
	t.Helper()
	ctx, cancel, err := b.Tab()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	do(t, ctx, chromedp.Navigate(pageURL))
	waitJS(t, ctx, "the test page", `window.ready === true`, 10*time.Second)
	if opts == "" {
		opts = "{}"
	}
	eval[string](t, ctx, fmt.Sprintf(`window.start({...%s, token: %q})`, opts, tok))
	return ctx
}

func seqsOf(t *testing.T, ctx context.Context, name string) []int {
	t.Helper()
	return eval[[]int](t, ctx, fmt.Sprintf(`window.seqs(%q)`, name))
}

// acceptWithin waits for the next socket and says how long it took.
func (f *fakeGateway) acceptWithin(t *testing.T, d time.Duration) (*fakeConn, time.Duration) {
	t.Helper()
	start := time.Now()
	select {
	case c := <-f.conns:
		return c, time.Since(start)
	case <-time.After(d):
		t.Fatalf("no socket within %s", d)
		return nil, 0
	}
}

func ackSeq(t *testing.T, m map[string]any) int {
	t.Helper()
	v, ok := m["seq"].(float64)
	if !ok {
		t.Fatalf("ack frame without a numeric seq: %v", m)
	}
	return int(v)
}

// TestClientCloseCodes: 1001 reconnects at once with since; 1013 backs
// off (the step is at least 2 s); 1008 asks getToken and reconnects with
// the new token; a getToken that has nothing new stops the client with an
// "auth" event and no further attempt.
func TestClientCloseCodes(t *testing.T) {
	t.Parallel()
	f := newFakeGateway(t)
	b := startBrowser(t)
	// Tokens about to expire: a 1008 means "expired" only for a token with
	// no time left (else it is a flood close, see the acks test).
	secret := []byte(launch.NewSecret())
	tok, fresh := launch.MintToken(secret, "merchant", "m1", time.Second), launch.MintToken(secret, "merchant", "m1", 2*time.Second)
	ctx := startClient(t, b, f.srv.URL+"/client-test.html", tok, fmt.Sprintf(`{rand: 1, newToken: %q}`, fresh))

	c1 := f.accept()
	if c1.since != "" || c1.token != tok {
		t.Fatalf("first socket: since %q, token ok %v", c1.since, c1.token == tok)
	}
	c1.send(t, hello("gw-a", 0, 0))
	c1.send(t, orderFrame(1, 1, order("u1-1", 1, wire.StatusPending)))
	if got := ackSeq(t, c1.nextFrame(t, "ack", 5*time.Second)); got != 1 {
		t.Fatalf("ack %d after order 1", got)
	}

	// 1001: at once (the connection lived over a second), with since.
	waitJS(t, ctx, "a second of life", `Date.now() - window.states.findLast(s => s.state === 'live').at > 1000`, 5*time.Second)
	_ = c1.c.Close(websocket.StatusGoingAway, "draining")
	c2, took := f.acceptWithin(t, 10*time.Second)
	if c2.since != "1" || took > 700*time.Millisecond {
		t.Fatalf("after 1001: since %q after %s, want since=1 at once", c2.since, took)
	}
	c2.send(t, hello("gw-b", 1, 1))
	if got := ackSeq(t, c2.nextFrame(t, "ack", 5*time.Second)); got != 1 {
		t.Fatalf("ack %d after hello, want 1 again (PROTOCOL.md: ack after every hello)", got)
	}

	// 1013: back off. With the random draw fixed at 1 the wait is the
	// step, and 1013 starts at the third step: 500 ms * 2^2.
	_ = c2.c.Close(websocket.StatusTryAgainLater, "slow consumer")
	c3, took := f.acceptWithin(t, 15*time.Second)
	if took < 1900*time.Millisecond || took > 3500*time.Millisecond {
		t.Fatalf("after 1013 the client came back after %s, want 2 s", took)
	}
	if c3.since != "1" {
		t.Fatalf("after 1013: since %q", c3.since)
	}
	c3.send(t, hello("gw-a", 1, 1))
	waitJS(t, ctx, "live again", `window.client.state.state === 'live'`, 5*time.Second)

	// 1008: the token expired. getToken gives a new one, used at once.
	_ = c3.c.Close(websocket.StatusPolicyViolation, "token expired")
	c4, took := f.acceptWithin(t, 10*time.Second)
	if c4.token != fresh || took > 700*time.Millisecond || c4.since != "1" {
		t.Fatalf("after 1008: new token %v, since %q, after %s", c4.token == fresh, c4.since, took)
	}
	if asked := eval[[]string](t, ctx, `window.tokenAsked`); len(asked) != 1 || asked[0] != "expired" {
		t.Fatalf("getToken calls %v", asked)
	}
	c4.send(t, hello("gw-a", 2, 2))
	c4.send(t, orderFrame(2, 2, order("u1-2", 2, wire.StatusPending)))
	waitJS(t, ctx, "order 2", `window.seqs('order').join() === '1,2'`, 5*time.Second)

	// 1008 again, and getToken has nothing newer (its token expired too):
	// the client stops.
	_ = c4.c.Close(websocket.StatusPolicyViolation, "token expired")
	waitJS(t, ctx, "the auth event", `window.counts.auth === 1 && window.client.state.state === 'unauthorized'`, 5*time.Second)
	select {
	case c := <-f.conns:
		t.Fatalf("the client reconnected (since %s) after giving up", c.since)
	case <-time.After(1500 * time.Millisecond): // a negative check: nothing may come
	}
}

// TestClientBacksOffExponentially: refusals before the upgrade are retried
// after the step (500 ms doubling) times the random draw; a Retry-After is
// a floor.
func TestClientBacksOffExponentially(t *testing.T) {
	t.Parallel()
	f := newFakeGateway(t)
	b := startBrowser(t)
	f.setRefuse(http.StatusServiceUnavailable)
	ctx := startClient(t, b, f.srv.URL+"/client-test.html", merchantToken(), `{rand: 1}`)
	attempts := f.waitAttempts(t, 5, 30*time.Second)
	for k := 0; k < 4; k++ {
		gap := attempts[k+1].Sub(attempts[k])
		step := 500 * time.Millisecond << k
		// The lower bound is exact; above it come the failed handshake and
		// the client's probe request on a busy machine.
		if gap < step-30*time.Millisecond || gap > step+1500*time.Millisecond {
			t.Errorf("gap %d: %s, want %s", k, gap, step)
		}
	}
	waitJS(t, ctx, "the reconnecting state", `window.client.state.state === 'reconnecting' && window.client.state.attempt >= 5`, 5*time.Second)

	// A draw of 0 would retry at once; Retry-After: 2 keeps it 2 s away.
	f.mu.Lock()
	f.refuse, f.retryAfter = http.StatusTooManyRequests, "2"
	n := len(f.attempts)
	f.mu.Unlock()
	eval[int](t, ctx, `window.rand = 0`)
	eval[bool](t, ctx, `(window.client.reconnectNow(), true)`)
	attempts = f.waitAttempts(t, n+3, 30*time.Second)
	for k := n + 1; k < n+3; k++ {
		if gap := attempts[k].Sub(attempts[k-1]); gap < 1950*time.Millisecond {
			t.Errorf("gap %s after a 429 with Retry-After: 2", gap)
		}
	}
	// Once a replica takes it, the client is live and the steps start over.
	f.mu.Lock()
	f.refuse, f.retryAfter = 0, ""
	f.mu.Unlock()
	c, _ := f.acceptWithin(t, 10*time.Second)
	c.send(t, hello("gw-a", 0, 0))
	waitJS(t, ctx, "live", `window.client.state.state === 'live' && window.client.state.attempt === 0`, 5*time.Second)
}

// waitAttempts waits until the gateway saw n upgrade attempts.
func (f *fakeGateway) waitAttempts(t *testing.T, n int, timeout time.Duration) []time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f.mu.Lock()
		got := append([]time.Time{}, f.attempts...)
		f.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d connection attempts in %s", len(got), timeout)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, bounded by the deadline
	}
}

// TestClientDeduplicatesAndAcks: duplicates and stale frames are dropped;
// a batch gets one ack after all its frames were handled; acks come at
// most every 250 ms; after a reconnect the hello is acked with what the
// client holds, then the replay.
func TestClientDeduplicatesAndAcks(t *testing.T) {
	t.Parallel()
	f := newFakeGateway(t)
	b := startBrowser(t)
	ctx := startClient(t, b, f.srv.URL+"/client-test.html", merchantToken(), `{batch: true}`)
	c := f.accept()
	if !c.batch {
		t.Fatal("batch: true did not ask for ?batch=1")
	}
	c.send(t, hello("gw-a", 0, 0))
	o := func(seq uint64) []byte {
		return orderFrame(seq, int64(seq), order(fmt.Sprintf("u1-%d", seq), int(seq), wire.StatusPending))
	}
	batch := strings.Join([]string{string(o(1)), string(o(2)), string(o(2)), string(o(1)), string(o(3))}, "\n")
	c.send(t, []byte(batch))
	waitJS(t, ctx, "3 orders, 2 duplicates", `window.seqs('order').join() === '1,2,3' && window.counts.duplicate === 2`, 5*time.Second)
	if got := ackSeq(t, c.nextFrame(t, "ack", 5*time.Second)); got != 3 {
		t.Fatalf("first ack %d, want 3: one ack after the whole batch was handled", got)
	}

	// 40 frames over about a second: at most one ack per 250 ms.
	start := time.Now()
	for seq := uint64(4); seq <= 43; seq++ {
		c.send(t, o(seq))
		time.Sleep(25 * time.Millisecond) // pacing the load, not synchronisation
	}
	sent := time.Since(start)
	waitJS(t, ctx, "43 orders", `window.seqs('order').length === 43`, 5*time.Second)
	var acks []int
	for len(acks) == 0 || acks[len(acks)-1] != 43 {
		acks = append(acks, ackSeq(t, c.nextFrame(t, "ack", 5*time.Second)))
	}
	if limit := int(sent/(250*time.Millisecond)) + 2; len(acks) > limit {
		t.Errorf("%d acks in %s, want at most %d: %v", len(acks), sent, limit, acks)
	}
	for i := 1; i < len(acks); i++ {
		if acks[i] <= acks[i-1] {
			t.Errorf("acks not increasing: %v", acks)
		}
	}

	// A dropped connection: back with since=43; hello says 45; the client
	// acks 43 at once, then 45 after the replay.
	_ = c.c.CloseNow()
	c2 := f.accept()
	if c2.since != "43" {
		t.Fatalf("since %q", c2.since)
	}
	c2.send(t, hello("gw-b", 45, 45))
	if got := ackSeq(t, c2.nextFrame(t, "ack", 5*time.Second)); got != 43 {
		t.Fatalf("ack after hello %d, want 43", got)
	}
	c2.send(t, o(44))
	c2.send(t, o(45))
	if got := ackSeq(t, c2.nextFrame(t, "ack", 5*time.Second)); got != 45 {
		t.Fatalf("ack after the replay %d, want 45", got)
	}
	if got := eval[[]bool](t, ctx, `window.log.filter(e => e.name === 'hello').map(e => e.fresh)`); len(got) != 2 || !got[0] || got[1] {
		t.Fatalf("hello fresh flags %v, want [true false]", got)
	}
	if missed := eval[int](t, ctx, `window.log.filter(e => e.name === 'hello')[1].missed`); missed != 2 {
		t.Fatalf("missed %d, want 2", missed)
	}
	// seen and process go out as frames on the socket.
	eval[bool](t, ctx, `(window.client.seen('u1-44'), window.client.process('u1-45'), true)`)
	if m := c2.nextFrame(t, "seen", 5*time.Second); fmt.Sprint(m["data"]) != "map[orderNo:u1-44]" {
		t.Fatalf("seen frame %v", m)
	}
	if m := c2.nextFrame(t, "process", 5*time.Second); fmt.Sprint(m["data"]) != "map[orderNo:u1-45]" {
		t.Fatalf("process frame %v", m)
	}

	// 1008 while the token has an hour left is the flood close: back off
	// and come back with the same token (no getToken, no sign-out).
	_ = c2.c.Close(websocket.StatusPolicyViolation, "too many frames")
	c3, took := f.acceptWithin(t, 15*time.Second)
	if c3.since != "45" || c3.token != c2.token {
		t.Fatalf("after a flood close: since %q, same token %v", c3.since, c3.token == c2.token)
	}
	if auth := eval[int](t, ctx, `window.counts.auth || 0`); auth != 0 {
		t.Fatalf("auth event after a flood close")
	}
	t.Logf("back %s after a flood close", took)
}

// TestClientFallsBackToSSE: a WebSocket URL that cannot connect (a
// blocked upgrade) makes the client use SSE after two attempts; acks and
// seen then go over the order API's HTTP twins; a stream the server ends
// is resumed at once with since.
func TestClientFallsBackToSSE(t *testing.T) {
	t.Parallel()
	f := newFakeGateway(t)
	b := startBrowser(t)
	ctx := startClient(t, b, f.srv.URL+"/client-test.html", merchantToken(),
		fmt.Sprintf(`{rand: 0.02, wsURL: 'ws://127.0.0.1:1/ws', apiURL: %q}`, f.srv.URL+"/api"))
	s := f.acceptSSE()
	if s.since != "" {
		t.Fatalf("first stream since %q", s.since)
	}
	s.send(t, hello("gw-a", 0, 0))
	s.send(t, orderFrame(1, 1, order("u1-1", 1, wire.StatusPending)))
	s.send(t, orderFrame(2, 2, order("u1-2", 2, wire.StatusPending)))
	s.send(t, orderFrame(2, 2, order("u1-2", 2, wire.StatusPending)))
	waitJS(t, ctx, "two orders over SSE", `window.seqs('order').join() === '1,2' && window.counts.fallback === 1 && window.client.state.transport === 'sse'`, 10*time.Second)
	eval[bool](t, ctx, `(window.client.seen('u1-1'), true)`)
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		acks, seen := append([]uint64{}, f.acksHTTP...), append([]string{}, f.seenHTTP...)
		f.mu.Unlock()
		if len(acks) > 0 && acks[len(acks)-1] == 2 && len(seen) == 1 && seen[0] == "u1-1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("HTTP acks %v, seen %v; want acks up to 2 and seen u1-1", acks, seen)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, bounded by the deadline
	}

	// The server ends the stream (drain): the client resumes at once.
	s.end()
	s2 := f.acceptSSE()
	if s2.since != "2" {
		t.Fatalf("resumed with since %q, want 2", s2.since)
	}
	s2.send(t, hello("gw-b", 3, 3))
	s2.send(t, orderFrame(3, 3, order("u1-3", 3, wire.StatusPending)))
	waitJS(t, ctx, "order 3 after the resume", `window.seqs('order').join() === '1,2,3'`, 5*time.Second)

	// A refusal of the stream is a refusal: 401 without getToken stops it.
	f.mu.Lock()
	f.refuseSSE = http.StatusUnauthorized
	f.mu.Unlock()
	s2.end()
	waitJS(t, ctx, "the auth event", `window.counts.auth === 1`, 10*time.Second)
}
