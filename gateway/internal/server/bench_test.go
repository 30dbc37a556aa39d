package server

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"orderpush/gateway/internal/wstest"
	"orderpush/pkg/presence"
	"orderpush/pkg/redistest"
)

// BenchmarkPresenceUpdate is one socket's presence life on real Redis:
// Add on connect and Remove on close (two pipelines).
func BenchmarkPresenceUpdate(b *testing.B) {
	rdb := newRedis(b, redistest.SharedURL(b))
	reg := presence.New(rdb, 0)
	ctx := context.Background()
	mid := redistest.Unique("m")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		conn := fmt.Sprintf("bench%d", i)
		if err := reg.Add(ctx, conn, mid, "node-bench"); err != nil {
			b.Fatal(err)
		}
		if err := reg.Remove(ctx, conn, mid); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPresenceBeat is the per-replica heartbeat: one SET per beat,
// whatever the number of sockets.
func BenchmarkPresenceBeat(b *testing.B) {
	rdb := newRedis(b, redistest.SharedURL(b))
	reg := presence.New(rdb, 0)
	for b.Loop() {
		if err := reg.Beat(context.Background(), "node-bench"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSocketFanout publishes events through Redis to one merchant with
// K sockets on one in-process replica and waits until every socket read
// every event: whole-path cost per delivery (Redis, sequencer, queues,
// writers, loopback TCP, and the clients, which share the CPU).
func BenchmarkSocketFanout(b *testing.B) {
	for _, k := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("sockets=%d", k), func(b *testing.B) {
			url := redistest.SharedURL(b)
			g := startGW(b, url, func(c *Config) { c.SendQueueSize = 4096 })
			mid := redistest.Unique("m")
			p := newPublisher(b, newRedis(b, url), mid)
			var received atomic.Int64
			var wg sync.WaitGroup
			conns := make([]*websocket.Conn, k)
			for i := range conns {
				c, _, err := websocket.Dial(context.Background(), wstest.URL(g.URL, merchantToken(b, mid), -1), nil)
				if err != nil {
					b.Fatal(err)
				}
				conns[i] = c
				wg.Go(func() {
					for {
						if _, _, err := c.Read(context.Background()); err != nil {
							return
						}
						received.Add(1)
					}
				})
			}
			defer func() {
				for _, c := range conns {
					_ = c.CloseNow()
				}
				wg.Wait()
			}()
			for received.Load() < int64(k) { // hellos
				time.Sleep(time.Millisecond) // wait for the hellos, bounded by the benchmark's own timeout
			}
			received.Store(0)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p.publish(1)
			}
			want := int64(b.N) * int64(k)
			deadline := time.Now().Add(time.Minute)
			for received.Load() < want && time.Now().Before(deadline) {
				time.Sleep(100 * time.Microsecond) // wait for delivery, bounded by the deadline
			}
			b.StopTimer()
			if got := received.Load(); got != want {
				b.Fatalf("received %d of %d", got, want)
			}
			el := b.Elapsed()
			b.ReportMetric(float64(el.Nanoseconds())/float64(want), "ns/delivery")
			b.ReportMetric(float64(want)/el.Seconds(), "deliveries/s")
		})
	}
}
