package prodstack_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"orderpush/pkg/wire"
	"orderpush/scripts/launch"
	"orderpush/scripts/prodstack"
)

var bins launch.Binaries

func TestMain(m *testing.M) {
	os.Exit(launch.BuildMain(m, "prodstack", &bins))
}

// startStack runs the whole topology for one test and tears it down after.
func startStack(t *testing.T, opts prodstack.Options) *prodstack.Stack {
	t.Helper()
	opts.Bins = bins
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	s, err := prodstack.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range append(append([]*prodstack.Process{s.Nginx}, s.Gateways...), s.OrderAPIs...) {
				t.Logf("--- %s (%s) ---\n%s", p.Name, p.Proc.LogFile, p.Proc.LogTail(3000))
			}
		}
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// subscriber is one merchant client behind the balancer: it reconnects
// through nginx with since=<last seq> whenever its socket ends, as a real
// client does, and records every merchant event it receives.
type subscriber struct {
	t     *testing.T
	url   string // .../ws?token=...
	mu    sync.Mutex
	nodes []string // hello.node of each connection, in order
	seqs  []uint64 // seq of every merchant event, in arrival order
	nos   []string // orderNo of every merchant event
	conn  *websocket.Conn
	hello chan string // the node of each new connection
	err   error       // a protocol violation, fatal at the end
}

func newSubscriber(t *testing.T, s *prodstack.Stack, merchant string) *subscriber {
	return &subscriber{
		t: t, url: s.WS() + "?token=" + s.Token("merchant", merchant),
		hello: make(chan string, 16),
	}
}

func (u *subscriber) last() uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seqs) == 0 {
		return 0
	}
	return u.seqs[len(u.seqs)-1]
}

// run keeps the subscriber connected until ctx ends.
func (u *subscriber) run(ctx context.Context) {
	for ctx.Err() == nil {
		url := u.url
		if since := u.last(); since > 0 {
			url += "&since=" + strconv.FormatUint(since, 10)
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, _, err := websocket.Dial(dctx, url, nil)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				u.t.Logf("dial through nginx: %v (retrying)", err)
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond): // client backoff
				}
			}
			continue
		}
		u.read(ctx, c)
		_ = c.CloseNow()
	}
}

func (u *subscriber) read(ctx context.Context, c *websocket.Conn) {
	for {
		_, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		var f struct {
			Event string `json:"event"`
			Seq   uint64 `json:"seq"`
			Data  struct {
				Node  string     `json:"node"`
				Order wire.Order `json:"order"`
			} `json:"data"`
		}
		if err := json.Unmarshal(msg, &f); err != nil {
			u.fail(fmt.Errorf("bad frame %s: %w", msg, err))
			return
		}
		u.mu.Lock()
		switch {
		case f.Event == wire.EventHello:
			u.nodes = append(u.nodes, f.Data.Node)
			u.conn = c
			select {
			case u.hello <- f.Data.Node:
			default: // nobody waits for reconnects' hellos
			}
		case f.Event == wire.EventResync:
			u.err = fmt.Errorf("resync after seq %d: the history window should cover every reconnect here", u.lastLocked())
		case f.Seq > 0:
			if want := u.lastLocked() + 1; f.Seq != want {
				u.err = errors.Join(u.err, fmt.Errorf("seq %d after %d (want %d): lost, repeated or out of order", f.Seq, u.lastLocked(), want))
			}
			u.seqs = append(u.seqs, f.Seq)
			u.nos = append(u.nos, f.Data.Order.OrderNo)
		}
		u.mu.Unlock()
	}
}

func (u *subscriber) lastLocked() uint64 {
	if len(u.seqs) == 0 {
		return 0
	}
	return u.seqs[len(u.seqs)-1]
}

func (u *subscriber) fail(err error) {
	u.mu.Lock()
	u.err = errors.Join(u.err, err)
	u.mu.Unlock()
}

// send writes a client frame on the current connection.
func (u *subscriber) send(ctx context.Context, frame string) error {
	u.mu.Lock()
	c := u.conn
	u.mu.Unlock()
	return c.Write(ctx, websocket.MessageText, []byte(frame))
}

func call(t *testing.T, method, url, tok, body string, into any) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if into != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, b)
		}
	}
	if resp.StatusCode >= 300 {
		t.Logf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	return resp.StatusCode
}

func placeOrder(t *testing.T, s *prodstack.Stack, member, merchant string, cents int) wire.Order {
	t.Helper()
	var o wire.Order
	body := fmt.Sprintf(`{"merchantId":%q,"date":"2026-11-26","price":%d.%02d}`, merchant, cents/100, cents%100)
	if code := call(t, http.MethodPost, s.API()+"/orders", member, body, &o); code != http.StatusCreated {
		t.Fatalf("POST /api/orders through nginx: %d", code)
	}
	return o
}

// TestThroughNginx drives the process stack through its single entry
// point: sockets spread over every gateway, orders placed through the
// balancer reach all of them, and replicas stopped mid-stream (one killed,
// one drained) are survived by reconnecting through the balancer with
// since: every socket sees every event exactly once, in order.
func TestThroughNginx(t *testing.T) {
	// One member places a stream of orders faster than ORDER_RATE allows;
	// the limit has tests of its own and is not what this one is about.
	s := startStack(t, prodstack.Options{Env: []string{"ORDER_RATE=0"}})
	const merchant = "m1"
	member := s.Token("member", "u1001")

	// As in compose, only registered merchants take orders: the demo
	// merchants were registered at start, any other is not found until it
	// is registered.
	other := fmt.Sprintf("unreg%d", time.Now().UnixNano()%1e9)
	body := `{"merchantId":"` + other + `","date":"2026-11-26","price":1}`
	if code := call(t, http.MethodPost, s.API()+"/orders", member, body, nil); code != http.StatusNotFound {
		t.Errorf("order for unregistered merchant %s: %d, want 404", other, code)
	}
	if err := s.RegisterMerchants(t.Context(), other, other); err != nil {
		t.Fatal(err)
	}
	placeOrder(t, s, member, other, 100)

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var subs []*subscriber
	nodes := map[string]int{}
	for i := 0; i < 6; i++ {
		u := newSubscriber(t, s, merchant)
		subs = append(subs, u)
		wg.Go(func() { u.run(ctx) })
		select {
		case n := <-u.hello:
			nodes[n]++
		case <-time.After(20 * time.Second):
			t.Fatalf("socket %d got no hello through nginx", i)
		}
	}
	for _, g := range s.Gateways {
		if nodes[g.Node] == 0 {
			t.Fatalf("no socket landed on %s: round robin gave %v", g.Node, nodes)
		}
	}
	t.Logf("6 sockets through nginx landed on %v", nodes)

	var placed []wire.Order
	for i := 0; i < 20; i++ {
		placed = append(placed, placeOrder(t, s, member, merchant, 1000+i))
	}
	waitAll(t, subs, 20)

	// Mid-stream: kill one replica abruptly, later drain another with
	// SIGTERM, while orders keep coming through the balancer.
	killed, drained := s.Gateways[1], s.Gateways[2]
	for i := 20; i < 60; i++ {
		switch i {
		case 30:
			killed.Proc.Kill()
			t.Logf("killed %s", killed.Node)
		case 45:
			drained.Proc.Signal(syscall.SIGTERM)
			t.Logf("sent SIGTERM to %s", drained.Node)
		}
		placed = append(placed, placeOrder(t, s, member, merchant, 1000+i))
		time.Sleep(10 * time.Millisecond) // pace: a stream, not one burst
	}
	if code, err := drained.Proc.Wait(); code != 0 || err != nil {
		t.Errorf("%s after SIGTERM: exit %d, %v; want 0 (drain)", drained.Node, code, err)
	}
	waitAll(t, subs, 60)

	// A socket's process frame goes gateway -> nginx /api -> an order API,
	// and the order.processed event reaches every socket.
	if err := subs[0].send(ctx, fmt.Sprintf(`{"event":"process","data":{"orderNo":%q}}`, placed[0].OrderNo)); err != nil {
		t.Fatal(err)
	}
	waitAll(t, subs, 61)

	for i, u := range subs {
		u.mu.Lock()
		if u.err != nil {
			t.Errorf("socket %d: %v", i, u.err)
		}
		for k, no := range u.nos[:60] {
			if no != placed[k].OrderNo {
				t.Errorf("socket %d: event %d is order %s, want %s", i, k+1, no, placed[k].OrderNo)
				break
			}
		}
		if u.nos[60] != placed[0].OrderNo {
			t.Errorf("socket %d: event 61 is %s, want the processed %s", i, u.nos[60], placed[0].OrderNo)
		}
		for _, n := range u.nodes[1:] {
			if n == killed.Node {
				t.Errorf("socket %d reconnected to the killed %s", i, n)
			}
		}
		if n := u.nodes[len(u.nodes)-1]; n != s.Gateways[0].Node {
			t.Errorf("socket %d ended on %s, want the surviving %s", i, n, s.Gateways[0].Node)
		}
		t.Logf("socket %d: connections %v", i, u.nodes)
		u.mu.Unlock()
	}

	var sum struct {
		OrderSum int64  `json:"orderSum"`
		Seq      uint64 `json:"seq"`
		Online   int    `json:"online"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		call(t, http.MethodGet, s.API()+"/merchants/"+merchant+"/summary", s.Token("merchant", merchant), "", &sum)
		if sum.Online == len(subs) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // presence is current within 2 s
	}
	if sum.OrderSum != 59 || sum.Seq != 61 || sum.Online != len(subs) {
		t.Errorf("summary through nginx %+v, want orderSum 59, seq 61, online %d", sum, len(subs))
	}

	// nginx spread the orders over both order API replicas.
	hits := upstreamHits(t, s.Nginx.Proc.LogFile, "/api/orders")
	for _, a := range s.OrderAPIs {
		if hits[a.Addr] == 0 {
			t.Errorf("no POST /api/orders reached %s: %v", a.Name, hits)
		}
	}
	log, _ := os.ReadFile(s.Nginx.Proc.LogFile)
	if bytes.Contains(log, []byte("token=")) {
		t.Error("a token reached the nginx log")
	}
}

// waitAll waits until every subscriber has seen seq n.
func waitAll(t *testing.T, subs []*subscriber, n uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		done := true
		for _, u := range subs {
			done = done && u.last() >= n
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			for i, u := range subs {
				u.mu.Lock()
				t.Logf("socket %d: last seq %d, nodes %v, err %v", i, u.lastLocked(), u.nodes, u.err)
				u.mu.Unlock()
			}
			t.Fatalf("not every socket reached seq %d within 30 s", n)
		}
		time.Sleep(10 * time.Millisecond) // poll interval, bounded by the deadline
	}
}

// upstreamHits counts, per upstream address, the requests for uri in the
// nginx access log.
func upstreamHits(t *testing.T, logFile, uri string) map[string]int {
	t.Helper()
	f, err := os.Open(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hits := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct {
			URI      string `json:"uri"`
			Upstream string `json:"upstream"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.URI == uri {
			hits[e.Upstream]++
		}
	}
	return hits
}
