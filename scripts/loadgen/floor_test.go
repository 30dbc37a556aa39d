package loadgen

import (
	"context"
	"errors"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"

	"orderpush/pkg/redistest"
)

var testSecret = []byte("loadgen-test-secret-0123456789abcdef")

func testEnv(t *testing.T, redisURL string) *Env {
	t.Helper()
	e, err := NewEnv(EnvConfig{RedisURL: redisURL, Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func startFloor(t *testing.T, batch bool) *WSFloor {
	t.Helper()
	f, err := StartWSFloor(testSecret, batch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

func floorFleet(t *testing.T, e *Env, f *WSFloor, n int, opts FleetOptions) *Fleet {
	t.Helper()
	opts.URLs = []*url.URL{f.URL}
	fl, err := NewFleet(e, []string{"m1", "m2"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fl.Close)
	res := fl.Open(t.Context(), n, 0, 8)
	if res.Opened != n {
		t.Fatalf("opened %d of %d: %v", res.Opened, n, res.Errors)
	}
	return fl
}

func TestClientReadsEveryFrameFromFloor(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(map[bool]string{false: "one frame per message", true: "batched"}[batch], func(t *testing.T) {
			e := testEnv(t, "")
			f := startFloor(t, batch)
			fl := floorFleet(t, e, f, 20, FleetOptions{Record: true})
			f.StartWriters(3, 64)
			const frames = 50
			for seq := uint64(1); seq <= frames; seq++ {
				f.Publish(OrderFrame("m1", seq, time.Now()))
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if !fl.WaitSeen(ctx, 20*frames) {
				t.Fatalf("sockets saw %d frames, want %d", fl.Seen(), 20*frames)
			}
			socks := fl.Socks()
			fl.Close()
			var d Delivery
			for _, s := range socks {
				if s.Err() != nil {
					t.Errorf("socket %d: %v", s.Index, s.Err())
				}
				if len(s.Receipts) != frames {
					t.Errorf("socket %d recorded %d receipts", s.Index, len(s.Receipts))
				}
				d.Add(s.Track, frames)
			}
			if !d.OK() || d.Received != 20*frames {
				t.Fatalf("delivery %+v", d)
			}
		})
	}
}

func TestClientAnswersPingAndReportsClose(t *testing.T) {
	e := testEnv(t, "")
	f := startFloor(t, false)
	fl := floorFleet(t, e, f, 2, FleetOptions{})
	f.mu.Lock()
	conns := append([]*websocket.Conn(nil), f.conns...)
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := conns[0].Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := conns[1].Close(websocket.StatusTryAgainLater, "slow consumer"); err != nil {
		t.Fatalf("close: %v", err)
	}
	var closed *Sock // the floor names its sockets by accept order
	for _, s := range fl.Socks() {
		if s.ConnID == "floor1" {
			closed = s
		}
	}
	select {
	case <-closed.done:
	case <-ctx.Done():
		t.Fatal("reader did not stop after the server closed")
	}
	var ce *CloseError
	if !errors.As(closed.Err(), &ce) || ce.Code != 1013 {
		t.Fatalf("err = %v, want close 1013", closed.Err())
	}
	if fl.Dropped() != 1 {
		t.Fatalf("dropped = %d, want 1", fl.Dropped())
	}
	if d := Drops(fl.Socks()); d["close 1013"] != 1 {
		t.Fatalf("drops = %v", d)
	}
}

func TestDialRefusedCarriesCode(t *testing.T) {
	f := startFloor(t, false)
	u := *f.URL
	u.RawQuery = "token=bad"
	_, err := dialWS(t.Context(), &net.Dialer{}, &u, nil)
	var de *DialError
	if !errors.As(err, &de) || de.Status != 401 || de.Code != "unauthorized" {
		t.Fatalf("dial with a bad token: %v", err)
	}
}

func TestFanoutFloorPhase(t *testing.T) {
	e := testEnv(t, "")
	cfg := FanoutConfig{Sockets: 10, Duration: 300 * time.Millisecond, Window: 16, Batch: true}
	cfg.defaults()
	res, err := fanoutFloor(t.Context(), e, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Frames == 0 || res.Deliveries != res.Frames*10 || res.Elapsed <= 0 {
		t.Fatalf("fan-out floor %+v", res)
	}
}

func TestRedisFloor(t *testing.T) {
	for _, script := range []bool{false, true} {
		t.Run(map[bool]string{false: "raw", true: "script"}[script], func(t *testing.T) {
			e := testEnv(t, redistest.SharedURL(t))
			res, err := RedisFloor(t.Context(), e, 10, 500, 400*time.Millisecond, 8, script)
			if err != nil {
				t.Fatal(err)
			}
			if res.Published != 200 || res.Received != res.Published || res.Latency.Count != res.Published {
				t.Fatalf("redis floor %+v", res)
			}
			if res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 {
				t.Fatalf("latency %+v", res.Latency)
			}
		})
	}
}

func TestPaceKeepsRateAndLimit(t *testing.T) {
	t.Parallel()
	var n int
	ch := make(chan int, 1000)
	res := Pace(t.Context(), 1000, 200*time.Millisecond, 150, 4, func(_ context.Context, i int) { ch <- i })
	close(ch)
	seen := map[int]bool{}
	for i := range ch {
		seen[i] = true
		n++
	}
	if n != 150 || res.Started != 150 || len(seen) != 150 {
		t.Fatalf("ran %d jobs (%d distinct), started %d; want 150", n, len(seen), res.Started)
	}
	if !seen[0] || !seen[149] {
		t.Fatal("job indexes are not 0..149")
	}
}
