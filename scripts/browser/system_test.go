package browser_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"orderpush/pkg/redistest"
	"orderpush/pkg/wire"
	"orderpush/scripts/launch"
)

// Tests against real processes (launch.StartSystemT: the order API on
// SQLite and gateway replicas on a real Redis): the dashboard is served by
// a gateway and calls the order API on its own origin (DASHBOARD_API_URL).

func startSystem(t *testing.T, gateways int, env ...string) *launch.System {
	t.Helper()
	return launch.StartSystemT(t, launch.SystemSpec{
		Bins: bins, RedisURL: redistest.SharedURL(t), Gateways: gateways, Env: env,
	})
}

func placeOn(t *testing.T, sys *launch.System, merchant, price string) wire.Order {
	t.Helper()
	var o wire.Order
	apiCall(t, http.MethodPost, sys.OrderAPI.URL+"/orders", sys.Token("member", "u1001"),
		fmt.Sprintf(`{"merchantId":%q,"date":%q,"price":%s}`, merchant, time.Now().Format(time.DateOnly), price), &o)
	return o
}

// online is the order API's count of the merchant's open sockets.
func online(t *testing.T, sys *launch.System, merchant string) int {
	t.Helper()
	var s struct {
		Online int `json:"online"`
	}
	apiCall(t, http.MethodGet, sys.OrderAPI.URL+"/merchants/"+merchant+"/summary", sys.Token("merchant", merchant), "", &s)
	return s.Online
}

// recorder is "elsewhere": a listener that records every request it gets.
type recorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []string // "METHOD path referer=..."; guarded by mu
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.reqs = append(r.reqs, fmt.Sprintf("%s %s referer=%q auth=%v", req.Method, req.URL.RequestURI(), req.Referer(), req.Header.Get("Authorization") != ""))
		r.mu.Unlock()
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Headers", "*")
		_, _ = w.Write([]byte(`{"orders":[],"next":""}`))
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reqs...)
}

// TestDashboardIgnoresAPILink is issue 9's crafted link: ?api= pointing
// elsewhere. The page works against the order API the gateway names, sends
// nothing to the other origin (not even when a script tries: the CSP's
// connect-src), keeps the token out of the address bar, history and
// storage of the link, and a link it follows carries no Referer.
func TestDashboardIgnoresAPILink(t *testing.T) {
	t.Parallel()
	sys := startSystem(t, 1)
	elsewhere := newRecorder(t)
	merchant := redistest.Unique("web-api")
	o := placeOn(t, sys, merchant, "12.5")
	b := startBrowser(t)
	ctx := tab(t, b)
	tok := sys.Token("merchant", merchant)
	gw := sys.Gateways[0]

	do(t, ctx, chromedp.Navigate(gw.URL+"/?api="+elsewhere.srv.URL+"&token="+tok))
	waitJS(t, ctx, "live with the order listed", `document.getElementById('conn').dataset.state === 'live' && `+
		fmt.Sprintf(`!!document.querySelector('.order[data-order-no=%q]')`, o.OrderNo), 10*time.Second)
	// Mark processed: a call with the bearer token, to the real order API.
	do(t, ctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`.order[data-order-no=%q] .process`, o.OrderNo))))
	waitJS(t, ctx, "count 0 after processing", countIs(0), 10*time.Second)
	var got wire.Order
	apiCall(t, http.MethodGet, sys.OrderAPI.URL+"/orders/"+o.OrderNo, tok, "", &got)
	if got.Status != wire.StatusProcessed {
		t.Fatalf("order %s is %s: the page did not reach the order API", o.OrderNo, got.Status)
	}
	if api := eval[string](t, ctx, `window.orderpush.state().api`); api != sys.OrderAPI.URL {
		t.Errorf("the page calls %q, want the gateway's DASHBOARD_API_URL %q", api, sys.OrderAPI.URL)
	}
	// A script on the page cannot reach elsewhere either: CSP connect-src.
	r, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`fetch(%q + '/steal', {mode: 'no-cors'}).then(() => 'sent', () => 'blocked')`, elsewhere.srv.URL),
		func(p *runtime.EvaluateParams) { p.AwaitPromise = new(true) }))
	if err != nil {
		t.Fatal(err)
	}
	if r != "blocked" {
		t.Errorf("a fetch to another origin was %s", r)
	}
	if reqs := elsewhere.requests(); len(reqs) != 0 {
		t.Fatalf("the page sent %d requests elsewhere: %v", len(reqs), reqs)
	}
	if u := eval[string](t, ctx, `location.href`); strings.Contains(u, "token") || strings.Contains(u, "api=") {
		t.Errorf("the address bar still shows %s", u)
	}
	if stored := eval[string](t, ctx, `JSON.stringify(Object.keys(localStorage).filter(k => localStorage.getItem(k).includes('127.0.0.1')))`); stored != "[]" {
		t.Errorf("the link's address was stored: %s", stored)
	}
	hist, err := chromedp.Call(ctx, page.GetNavigationHistory, cdp.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range hist.Entries {
		if strings.Contains(e.URL, "token=") {
			t.Errorf("history entry %d keeps the token: %s", e.ID, e.URL)
		}
	}
	// A link the person follows: no Referer, so no token and no page URL.
	do(t, ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.href = %q`, elsewhere.srv.URL+"/away")))
	deadline := time.Now().Add(10 * time.Second)
	for len(elsewhere.requests()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the navigation elsewhere never arrived")
		}
		time.Sleep(20 * time.Millisecond) // poll interval, bounded by the deadline
	}
	if reqs := elsewhere.requests(); len(reqs) != 1 || reqs[0] != `GET /away referer="" auth=false` {
		t.Fatalf("elsewhere got %v, want only the navigation without Referer", reqs)
	}
}

// TestDashboardTabsShareOneSocket: two tabs of one merchant in one browser
// profile hold one socket (the order API's online count), both show each
// order, and only the socket's tab chimes, also as the chime repeats;
// closing that tab hands the socket over (resuming with since) without a
// missed order, and the repeating alert with it.
func TestDashboardTabsShareOneSocket(t *testing.T) {
	t.Parallel()
	sys := startSystem(t, 2)
	merchant := redistest.Unique("web-tabs")
	b := startBrowser(t)
	tok := sys.Token("merchant", merchant)

	ctxA, closeA, err := b.Tab()
	if err != nil {
		t.Fatal(err)
	}
	defer closeA()
	do(t, ctxA, chromedp.Navigate(sys.Gateways[0].URL+"/?token="+tok))
	waitJS(t, ctxA, "tab A live", `document.getElementById('conn').dataset.state === 'live' && document.body.dataset.role === 'leader'`, 15*time.Second)
	ctxB := tab(t, b)
	do(t, ctxB, chromedp.Navigate(sys.Gateways[0].URL+"/")) // the token is in this profile's storage
	waitJS(t, ctxB, "tab B live through A", `document.getElementById('conn').dataset.state === 'live' && document.body.dataset.role === 'follower' && `+countIs(0), 15*time.Second)

	// One socket. The count is current within 2 s (PROTOCOL.md), so a
	// second socket would show by then.
	waitOnline(t, sys, merchant, 1, 5*time.Second)
	time.Sleep(2500 * time.Millisecond) // let presence catch up with a socket B must not have opened
	if n := online(t, sys, merchant); n != 1 {
		t.Fatalf("online %d with two tabs, want 1", n)
	}

	setRepeat(t, ctxA, 3) // kept per browser: tab B follows
	waitJS(t, ctxB, "tab B follows the repeat setting", `document.getElementById('repeat').value === '3'`, 5*time.Second)
	o1 := placeOn(t, sys, merchant, "18")
	for name, ctx := range map[string]context.Context{"A": ctxA, "B": ctxB} {
		waitJS(t, ctx, "order 1 in tab "+name, countIs(1)+fmt.Sprintf(` && !!document.querySelector('.order[data-order-no=%q]') && document.body.dataset.unseen === '1'`, o1.OrderNo), 5*time.Second)
	}
	// One chime per browser, also while it repeats: the socket's tab
	// chimes, the other never.
	waitJS(t, ctxA, "tab A repeats the chime", `Number(document.body.dataset.chimes || 0) >= 2`, 10*time.Second)
	if a, bb := chimesOf(t, ctxA), chimesOf(t, ctxB); a < 2 || bb != 0 || eval[string](t, ctxB, `document.body.dataset.alerting`) != "false" {
		t.Fatalf("chimes: tab A %d, tab B %d (alerting %s); want them in the socket's tab only",
			a, bb, eval[string](t, ctxB, `document.body.dataset.alerting`))
	}

	// Close A: B takes the socket over and resumes with since; an order
	// placed during the hand-over arrives once.
	closeA()
	o2 := placeOn(t, sys, merchant, "19")
	waitJS(t, ctxB, "tab B holds the socket with order 2", `document.body.dataset.role === 'leader' && document.getElementById('conn').dataset.state === 'live' && `+
		countIs(2)+fmt.Sprintf(` && !!document.querySelector('.order[data-order-no=%q]')`, o2.OrderNo), 15*time.Second)
	o3 := placeOn(t, sys, merchant, "20")
	waitJS(t, ctxB, "order 3 live in B", countIs(3)+fmt.Sprintf(` && !!document.querySelector('.order[data-order-no=%q]')`, o3.OrderNo), 5*time.Second)
	if got := assertNoDuplicateRows(t, ctxB); !sameSet(got, []string{o1.OrderNo, o2.OrderNo, o3.OrderNo}) {
		t.Fatalf("tab B lists %v", got)
	}
	if seq := eval[int](t, ctxB, `window.orderpush.state().seq`); seq != 3 {
		t.Fatalf("tab B at seq %d, want 3", seq)
	}
	// The alert moved with the socket: tab B now chimes for the orders
	// nobody has seen.
	before := chimesOf(t, ctxB)
	waitJS(t, ctxB, "tab B alerting and chiming", fmt.Sprintf(`document.body.dataset.alerting === 'true' && document.body.dataset.unseen === '3' && Number(document.body.dataset.chimes || 0) > %d`, before), 10*time.Second)
	waitOnline(t, sys, merchant, 1, 5*time.Second)
}

func waitOnline(t *testing.T, sys *launch.System, merchant string, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := online(t, sys, merchant)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("online %d, want %d", n, want)
		}
		time.Sleep(100 * time.Millisecond) // poll interval, bounded by the deadline
	}
}

// crossOriginClientPage imports /client.js from a gateway on another
// origin, as an integrator's site does (the module needs CORS).
func crossOriginClientPage(t *testing.T) *httptest.Server {
	page := strings.Replace(clientTestPage, "import { connect, VERSION } from '/client.js';",
		"const gw = new URLSearchParams(location.search).get('gw');\nconst { connect, VERSION } = await import(gw + '/client.js');", 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestClientRenewsExpiredTokenOnRealGateway: the gateway closes a socket
// whose token expires with 1008; the client asks getToken, reconnects with
// since and gets the orders placed meanwhile, once each.
func TestClientRenewsExpiredTokenOnRealGateway(t *testing.T) {
	t.Parallel()
	sys := startSystem(t, 1)
	merchant := redistest.Unique("web-exp")
	site := crossOriginClientPage(t)
	b := startBrowser(t)
	short := launch.MintToken(sys.Secret, "merchant", merchant, 4*time.Second)
	fresh := sys.Token("merchant", merchant)
	gw := sys.Gateways[0].URL
	ctx := startClient(t, b, site.URL+"/?gw="+gw, short, fmt.Sprintf(`{url: %q, newToken: %q}`, gw, fresh))
	waitJS(t, ctx, "live", `window.client && window.client.state.state === 'live'`, 10*time.Second)
	o1 := placeOn(t, sys, merchant, "1")
	waitJS(t, ctx, "order 1", `window.seqs('order').join() === '1'`, 5*time.Second)
	waitJS(t, ctx, "getToken after 1008", `window.tokenAsked.join() === 'expired'`, 15*time.Second)
	o2 := placeOn(t, sys, merchant, "2")
	waitJS(t, ctx, "order 2 on the new token", `window.seqs('order').join() === '1,2' && window.client.state.state === 'live'`, 10*time.Second)
	codes := eval[[]int](t, ctx, `window.states.filter(s => s.state === 'reconnecting').map(s => s.code)`)
	if len(codes) == 0 || codes[0] != 1008 {
		t.Fatalf("reconnect codes %v, want 1008 first", codes)
	}
	nos := eval[[]string](t, ctx, `window.log.filter(e => e.name === 'order').map(e => e.orderNo)`)
	if strings.Join(nos, ",") != o1.OrderNo+","+o2.OrderNo {
		t.Fatalf("orders %v", nos)
	}
}

// blockingProxy stands for a network that breaks WebSockets while plain
// HTTP passes: it serves the client test page and forwards everything else
// round robin to the gateways, but closes every upgrade request.
type blockingProxy struct {
	srv      *httptest.Server
	mu       sync.Mutex
	next     int // guarded by mu
	upgrades int // upgrade requests closed; guarded by mu
}

func newBlockingProxy(t *testing.T, gateways []*launch.Service) *blockingProxy {
	p := &blockingProxy{}
	var proxies []*httputil.ReverseProxy
	for _, g := range gateways {
		u, err := url.Parse(g.URL)
		if err != nil {
			t.Fatal(err)
		}
		proxies = append(proxies, httputil.NewSingleHostReverseProxy(u))
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/client-test.html" {
			serveClientTestPage(w, r)
			return
		}
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			p.mu.Lock()
			p.upgrades++
			p.mu.Unlock()
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close() // no answer at all, as a broken proxy does
			}
			return
		}
		p.mu.Lock()
		rp := proxies[p.next%len(proxies)]
		p.next++
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// TestClientFallsBackToSSEOnRealGateways: behind a proxy that breaks
// WebSockets, /client.js and the dashboard use SSE and still get every
// order once, also when the replica holding the stream shuts down.
func TestClientFallsBackToSSEOnRealGateways(t *testing.T) {
	t.Parallel()
	sys := startSystem(t, 2)
	proxy := newBlockingProxy(t, sys.Gateways)
	merchant := redistest.Unique("web-sse")
	tok := sys.Token("merchant", merchant)
	b := startBrowser(t)
	ctx := startClient(t, b, proxy.srv.URL+"/client-test.html", tok, fmt.Sprintf(`{apiURL: %q, rand: 0.1}`, sys.OrderAPI.URL))
	waitJS(t, ctx, "live over SSE", `window.client.state.state === 'live' && window.client.state.transport === 'sse' && window.counts.fallback === 1`, 20*time.Second)
	// The dashboard behind the same proxy falls back too.
	dash := tab(t, b)
	do(t, dash, chromedp.Navigate(proxy.srv.URL+"/?token="+tok))
	waitJS(t, dash, "the dashboard live over SSE", `document.getElementById('conn').dataset.state === 'live' && document.getElementById('conn-text').textContent.includes('SSE')`, 20*time.Second)

	var want []string
	for i := range 5 {
		want = append(want, placeOn(t, sys, merchant, fmt.Sprint(10+i)).OrderNo)
	}
	waitJS(t, ctx, "five orders over SSE", `window.seqs('order').join() === '1,2,3,4,5'`, 10*time.Second)
	waitJS(t, dash, "five orders on the dashboard", countIs(5)+` && document.querySelectorAll('#orders .order').length === 5`, 10*time.Second)

	// Shut down the replica the client's stream is on: the stream ends, the
	// client resumes through the proxy on the other one.
	node := eval[string](t, ctx, `window.client.info.node`)
	var holder *launch.Service
	for _, g := range sys.Gateways {
		if g.Node == node {
			holder = g
		}
	}
	if holder == nil {
		t.Fatalf("stream on %q, not one of the gateways", node)
	}
	holder.Proc.Signal(syscall.SIGTERM)
	want = append(want, placeOn(t, sys, merchant, "20").OrderNo)
	waitJS(t, ctx, "six orders after the replica left", `window.seqs('order').join() === '1,2,3,4,5,6' && window.client.state.state === 'live' && window.client.info.node !== '`+node+`'`, 20*time.Second)
	nos := eval[[]string](t, ctx, `window.log.filter(e => e.name === 'order').map(e => e.orderNo)`)
	if strings.Join(nos, ",") != strings.Join(want, ",") {
		t.Fatalf("orders %v, want %v", nos, want)
	}
	if d := eval[int](t, ctx, `window.counts.duplicate || 0`); d != 0 {
		t.Logf("%d duplicates dropped", d)
	}
	proxy.mu.Lock()
	upgrades := proxy.upgrades
	proxy.mu.Unlock()
	if upgrades < 2 {
		t.Fatalf("the proxy closed %d upgrades: the client did not try WebSocket first", upgrades)
	}
}
