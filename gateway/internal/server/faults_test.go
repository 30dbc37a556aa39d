package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/wstest"
	"orderpush/pkg/poll"
	"orderpush/pkg/presence"
	"orderpush/pkg/rediskey"
	"orderpush/pkg/redistest"
	"orderpush/pkg/stream/publish"
	"orderpush/pkg/wire"
)

// TestRedisRestartedEmpty (issue 4): Redis is stopped for seconds and comes
// back empty while orders are placed. Orders are committed to the (fake)
// order API's log throughout; what Redis missed is published again by the
// API's outbox, either at once or only after the gateways looked (then the
// merchant state and the missing events come from the order API). Every
// socket ends with every seq exactly once, in order, and never sees resync.
func TestRedisRestartedEmpty(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		lag  int // orders committed after the restart before the outbox publishes again
	}{{"outbox first", 0}, {"event log first", 25}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			redisRestart(t, tc.lag)
		})
	}
}

func redisRestart(t *testing.T, lag int) {
	r := redistest.Start(t)
	api := newFakeAPI(t, r.Client())
	opt := func(c *Config) { c.OrderAPIURL = api.URL() }
	a, b := startGW(t, r.URL(), opt), startGW(t, r.URL(), opt)
	mids := []string{redistest.Unique("m"), redistest.Unique("m")}
	var fol []*wstest.Follower
	for i := range 6 {
		f := wstest.Follow([]string{[]string{a.URL, b.URL}[i%2], []string{b.URL, a.URL}[i%2]}, merchantToken(t, mids[i%2]))
		t.Cleanup(f.Stop)
		fol = append(fol, f)
	}
	for _, f := range fol {
		if err := f.Connected(10*time.Second, 1); err != nil {
			t.Fatal(err)
		}
	}
	const total = 150
	t0 := time.Now()
	var down, up time.Duration
	for i := 1; i <= total; i++ {
		publishing := i <= 50 || i > 100+lag
		for _, m := range mids {
			if publishing {
				api.place(m) // commit, then publish everything unpublished in order
			} else {
				api.commit(m) // Redis down (or the outbox not yet back): committed only
			}
		}
		switch i {
		case 50:
			r.Stop()
			down = time.Since(t0)
		case 100:
			r.Start() // empty: no persistence
			up = time.Since(t0)
		}
		if !publishing {
			time.Sleep(40 * time.Millisecond) // orders keep coming, about 25 a second
		}
	}
	placed := time.Since(t0)
	for i, f := range fol {
		if err := f.WaitSeq(20*time.Second, total); err != nil {
			t.Fatalf("follower %d: %v", i, err)
		}
		if err := f.Check(1, total); err != nil {
			t.Fatalf("follower %d: %v (%s)", i, err, f.Summary())
		}
	}
	// Presence came back with Redis: the replicas wrote their sockets again.
	reg := presence.New(r.Client(), 0)
	poll.Within(t, 10*time.Second, "presence written again after Redis returned", func() error {
		for _, m := range mids {
			if n, err := reg.Online(context.Background(), m); err != nil || n != 3 {
				return fmt.Errorf("online %d %v", n, err)
			}
		}
		return nil
	})
	t.Logf("redis down at %s, up at %s, all %d orders placed at %s, every socket complete at %s",
		down.Round(time.Millisecond), up.Round(time.Millisecond), total*len(mids), placed.Round(time.Millisecond),
		time.Since(t0).Round(time.Millisecond))
	var fromLog float64
	for _, g := range []*gw{a, b} {
		if n := g.metric(g.srv.m.RedisReconnects); n < 1 {
			t.Fatalf("replica %s counted %v redis reconnects", g.Node, n)
		}
		fromLog += g.metric(g.srv.m.GapsFilled.WithLabelValues(metrics.SourceEventLog))
	}
	if lag > 0 && fromLog == 0 {
		t.Fatal("nothing came from the event log although Redis had lost it")
	}
	t.Logf("events filled from the event log: %v, from history: %v", fromLog,
		a.metric(a.srv.m.GapsFilled.WithLabelValues(metrics.SourceHistory))+b.metric(b.srv.m.GapsFilled.WithLabelValues(metrics.SourceHistory)))
}

// TestReorderedPublishers (issue 4): two publishers race, as two order API
// replicas do (each commits, then publishes), so events reach Redis out of
// seq order; sockets still get them strictly in order, without resync.
func TestReorderedPublishers(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	rdb := newRedis(t, url)
	api := newFakeAPI(t, rdb)
	opt := func(c *Config) { c.OrderAPIURL = api.URL() }
	a, b := startGW(t, url, opt), startGW(t, url, opt)
	mid := redistest.Unique("m")
	socks := []*wstest.Conn{dial(t, a.URL, mid, -1), dial(t, b.URL, mid, -1), dial(t, a.URL, mid, -1)}
	for _, c := range socks {
		if _, err := c.WaitEvent(5*time.Second, "hello", 1); err != nil {
			t.Fatal(err)
		}
	}
	const total = 300
	frames := make([][]byte, total+1)
	for seq := 1; seq <= total; seq++ {
		_, _, frames[seq] = api.commit(mid)
	}
	store := publish.New(rdb, publish.Options{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for seq := 1 + w; seq <= total; seq += 2 {
				if rng.IntN(3) == 0 {
					time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
				}
				if _, err := store.Publish(context.Background(), mid, uint64(seq), int64(seq), frames[seq]); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, c := range socks {
		if err := c.WaitSeq(10*time.Second, total); err != nil {
			t.Fatal(err)
		}
		if err := wstest.CheckStream(c.Frames(), -1, false); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGapFilledFromHistory: an event whose message was lost (it is in
// history, never published) is filled from Redis history when the next one
// arrives.
func TestGapFilledFromHistory(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	g := startGW(t, url)
	rdb := newRedis(t, url)
	mid := redistest.Unique("m")
	p := newPublisher(t, rdb, mid)
	c := dial(t, g.URL, mid, -1)
	if _, err := c.WaitEvent(5*time.Second, "hello", 1); err != nil {
		t.Fatal(err)
	}
	p.publish(2)
	seq, sum, fr := p.next() // seq 3: stored as the script would, but its PUBLISH is lost
	ctx := context.Background()
	if err := rdb.ZAdd(ctx, rediskey.History(mid), redisZ(seq, fr)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, rediskey.State(mid), "seq", seq, "orderSum", sum).Err(); err != nil {
		t.Fatal(err)
	}
	p.publish(2)
	if err := c.WaitSeq(5*time.Second, 5); err != nil {
		t.Fatal(err)
	}
	if err := wstest.CheckStream(c.Frames(), -1, false); err != nil {
		t.Fatal(err)
	}
	// The fill counts after it delivered: the frames may arrive first.
	poll.Within(t, 5*time.Second, "the history fill counted", func() error {
		if n := g.metric(g.srv.m.GapsFilled.WithLabelValues(metrics.SourceHistory)); n != 1 {
			return fmt.Errorf("history fills %v, want 1", n)
		}
		return nil
	})
}

// TestGapFilledFromEventLog: an event Redis never had (its publish failed)
// is filled from the order API's event log; a gap nobody holds becomes
// resync and the stream goes on after it.
func TestGapFilledFromEventLog(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	rdb := newRedis(t, url)
	api := newFakeAPI(t, rdb)
	g := startGW(t, url, func(c *Config) { c.OrderAPIURL = api.URL() })
	bare := startGW(t, url) // no order API: the same gap is a resync there
	mid := redistest.Unique("m")
	c, cb := dial(t, g.URL, mid, -1), dial(t, bare.URL, mid, -1)
	for _, x := range []*wstest.Conn{c, cb} {
		if _, err := x.WaitEvent(5*time.Second, "hello", 1); err != nil {
			t.Fatal(err)
		}
	}
	api.place(mid)
	api.place(mid)
	api.commit(mid) // seq 3: committed, never published
	api.mu.Lock()
	api.published[mid] = 3 // the relay will not send it either
	api.mu.Unlock()
	api.place(mid)
	api.place(mid)
	if err := c.WaitSeq(5*time.Second, 5); err != nil {
		t.Fatal(err)
	}
	if err := wstest.CheckStream(c.Frames(), -1, false); err != nil {
		t.Fatal(err)
	}
	poll.Within(t, 5*time.Second, "the event-log fill counted", func() error {
		if n := g.metric(g.srv.m.GapsFilled.WithLabelValues(metrics.SourceEventLog)); n != 1 {
			return fmt.Errorf("event log fills %v, want 1", n)
		}
		return nil
	})
	r, err := cb.WaitEvent(5*time.Second, "resync", 1)
	if err != nil {
		t.Fatal(err)
	}
	// resync carries the current state; the stream goes on after it.
	if h := r.Hello(); h.Seq != 5 || h.OrderSum != 5 {
		t.Fatalf("resync %s", r.Raw)
	}
	api.place(mid)
	if err := cb.WaitSeq(5*time.Second, 6); err != nil {
		t.Fatal(err)
	}
	if err := wstest.CheckStream(cb.Frames(), -1, true); err != nil {
		t.Fatal(err)
	}
}

// TestReplayFromEventLog: a reconnect whose gap Redis no longer holds
// (trimmed history) is replayed from the event log; without an order API it
// gets resync.
func TestReplayFromEventLog(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	rdb := newRedis(t, url)
	api := newFakeAPI(t, rdb)
	g := startGW(t, url, func(c *Config) { c.OrderAPIURL = api.URL() })
	bare := startGW(t, url)
	mid := redistest.Unique("m")
	for range 20 {
		api.place(mid)
	}
	// History trimmed to the newest 5 (as HISTORY_SIZE would).
	if err := rdb.ZRemRangeByScore(context.Background(), rediskey.History(mid), "0", "15").Err(); err != nil {
		t.Fatal(err)
	}
	c := dial(t, g.URL, mid, 3)
	if err := c.WaitSeq(5*time.Second, 20); err != nil {
		t.Fatal(err)
	}
	if err := wstest.CheckStream(c.Frames(), 3, false); err != nil {
		t.Fatal(err)
	}
	cb := dial(t, bare.URL, mid, 3)
	r, err := cb.WaitEvent(5*time.Second, "resync", 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.Hello().Seq != 20 {
		t.Fatalf("resync %s", r.Raw)
	}
	api.place(mid)
	if err := cb.WaitSeq(5*time.Second, 21); err != nil {
		t.Fatal(err)
	}
	if err := wstest.CheckStream(cb.Frames(), 3, true); err != nil {
		t.Fatal(err)
	}
}

// TestProcessForwarding: a socket's process frame is forwarded to the order
// API with the socket's own token; a refusal comes back as an error frame.
func TestProcessForwarding(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	api := newFakeAPI(t, newRedis(t, url))
	api.processFn = func(no string) (int, string) {
		if strings.HasPrefix(no, "u2") {
			return 403, "forbidden"
		}
		return 200, ""
	}
	g := startGW(t, url, func(c *Config) { c.OrderAPIURL = api.URL() })
	mid := redistest.Unique("m")
	c := dial(t, g.URL, mid, -1)
	ctx := context.Background()
	for _, no := range []string{"u100000000000000000001", "u200000000000000000002"} {
		if err := c.Send(ctx, []byte(`{"event":"process","data":{"orderNo":"`+no+`"}}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Send(ctx, []byte(`{"event":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	e, err := c.WaitEvent(5*time.Second, "error", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(e.Data), `"code":"forbidden"`) {
		t.Fatalf("error frame %s", e.Raw)
	}
	if _, err := c.WaitEvent(5*time.Second, "pong", 1); err != nil {
		t.Fatal(err)
	}
	api.mu.Lock()
	got := strings.Join(api.processed, ",")
	api.mu.Unlock()
	if got != "u100000000000000000001 "+mid+",u200000000000000000002 "+mid {
		t.Fatalf("order api saw %q", got)
	}
	if n := len(c.Frames()); n != 3 { // hello, error, pong
		t.Fatalf("%d frames: %v", n, c.Frames())
	}
}

// TestSlowConsumer (issue 4): a socket that never reads while thousands of
// events are sent is closed with 1013; the other sockets of the merchant
// get everything on time; the heap stays bounded.
func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	g := startGW(t, url)
	mid := redistest.Unique("m")
	p := newPublisher(t, newRedis(t, url), mid)
	var fast []*wstest.Conn
	for range 3 {
		c, err := wstest.DialLean(context.Background(), wstest.URL(g.URL, merchantToken(t, mid), -1), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		fast = append(fast, c)
	}
	for _, c := range fast {
		if _, err := c.WaitEvent(5*time.Second, "hello", 1); err != nil {
			t.Fatal(err)
		}
	}
	// The slow client reads nothing and keeps a tiny receive buffer, so the
	// gateway's writes back up instead of vanishing into kernel buffers. The
	// buffer is set before connect: shrinking it later stalls TCP.
	small := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8192)
		})
		return errors.Join(err, serr)
	}}
	slowHTTP := &http.Client{Transport: &http.Transport{DialContext: small.DialContext}}
	slow, _, err := websocket.Dial(context.Background(), wstest.URL(g.URL, merchantToken(t, mid), -1),
		&websocket.DialOptions{HTTPClient: slowHTTP})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.CloseNow()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	// Once the gateway gives up on it, the slow client starts reading: what
	// was in flight, then the close frame.
	t0 := time.Now()
	slowEnd := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(30 * time.Second)
		for g.metric(g.srv.m.SlowConsumerCloses) == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // polling a metric, bounded by the deadline
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		for err == nil {
			_, _, err = slow.Read(ctx)
		}
		slowEnd <- err
	}()

	// Published in steps of half the send queue, each step waiting until
	// the fast sockets have it: they are never a queue behind, however
	// slowly a loaded machine runs their readers, while the slow socket's
	// queue fills within a few steps.
	const step, steps = 128, 16
	const total = step * steps
	big := strings.Repeat("x", 4000)
	for range steps {
		var seq uint64
		for range step {
			var sum int64
			seq, sum, _ = p.next()
			o := wire.Order{OrderNo: fmt.Sprintf("u1%017d", seq), MerchantID: mid, UserID: "u1", Date: "2022-06-22", Status: "pending", CreatedAt: time.Now()}
			fr := wire.MustEncode(wire.EventOrder, seq, time.Now().UnixMilli(), wire.OrderData{OrderSum: sum, Msg: big, Order: o})
			if _, err := p.store.Publish(context.Background(), mid, seq, sum, fr); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range fast {
			if err := c.WaitSeq(20*time.Second, seq); err != nil {
				t.Fatal(err)
			}
		}
	}
	var maxLag time.Duration
	for _, c := range fast {
		if err := c.WaitSeq(20*time.Second, total); err != nil {
			t.Fatal(err)
		}
		fs := c.Frames()
		if err := wstest.CheckStream(fs, -1, false); err != nil {
			t.Fatal(err)
		}
		for _, f := range fs[1:] {
			maxLag = max(maxLag, f.At.Sub(time.UnixMilli(f.TS)))
		}
	}
	if err := <-slowEnd; websocket.CloseStatus(err) != websocket.StatusTryAgainLater {
		t.Fatalf("slow socket ended with %v, want close 1013", err)
	}
	if n := g.metric(g.srv.m.SlowConsumerCloses); n != 1 {
		t.Fatalf("slow consumer closes %v, want 1", n)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%d events (%d KiB) in %s; max delivery lag on the other sockets %s; heap in use grew %d KiB",
		total, total*len(big)>>10, time.Since(t0).Round(time.Millisecond), maxLag, grown>>10)
	if grown > 16<<20 {
		t.Fatalf("heap grew by %d MiB", grown>>20)
	}
	// Had the slow socket held up the fan-out, the others would have waited
	// for its writes to time out (10 s); a loaded CI machine stays well below.
	if maxLag > 5*time.Second {
		t.Fatalf("other sockets lagged %s", maxLag)
	}
}
