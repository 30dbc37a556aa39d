package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"orderpush/gateway/internal/metrics"
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
			helloBy := time.Now().Add(time.Minute)
			for received.Load() < int64(k) { // hellos
				if time.Now().After(helloBy) {
					b.Fatalf("%d of %d hellos within a minute", received.Load(), k)
				}
				time.Sleep(time.Millisecond) // poll interval, bounded by helloBy
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

// BenchmarkIdleSockets opens K sockets on one in-process replica and
// measures what an idle socket costs the process: heap and stacks in use
// (after a GC) and goroutines, per socket. The clients are bare TCP
// connections that read the handshake and the hello and then sit idle, so
// their own cost (a net.Conn each, ~0.3 KiB) is nearly all gateway.
// ns/op is the time to open the K sockets (parallel 64).
func BenchmarkIdleSockets(b *testing.B) { benchIdle(b, rawDial) }

// BenchmarkIdleSSE is BenchmarkIdleSockets for SSE streams (GET /sse):
// bare TCP clients that read the headers and the hello event, then sit
// idle.
func BenchmarkIdleSSE(b *testing.B) { benchIdle(b, rawSSEDial) }

func benchIdle(b *testing.B, dial func(host, tok string) (net.Conn, error)) {
	const k = 2000
	url := redistest.SharedURL(b)
	g := startGW(b, url)
	host := strings.TrimPrefix(g.URL, "http://")
	mids := make([]string, 200)
	toks := make([]string, len(mids))
	for i := range mids {
		mids[i] = redistest.Unique("m")
		toks[i] = merchantToken(b, mids[i])
	}
	for b.Loop() {
		b.StopTimer()
		before := memInUse()
		gr := runtime.NumGoroutine()
		b.StartTimer()
		conns := make([]net.Conn, k)
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for range 64 {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= k {
						return
					}
					c, err := dial(host, toks[i%len(toks)])
					if err != nil {
						errs <- err
						return
					}
					conns[i] = c
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		select {
		case err := <-errs:
			b.Fatal(err)
		default:
		}
		after := memInUse()
		b.ReportMetric(float64(after-before)/k, "bytes/socket")
		b.ReportMetric(float64(runtime.NumGoroutine()-gr)/k, "goroutines/socket")
		for _, c := range conns {
			_ = c.Close()
		}
		eventually(b, 30*time.Second, func() error {
			if n := g.metric(g.srv.m.ConnectionsOpen.WithLabelValues(metrics.TransportWS)) + g.metric(g.srv.m.ConnectionsOpen.WithLabelValues(metrics.TransportSSE)); n != 0 {
				return fmt.Errorf("%v sockets still open", n)
			}
			return nil
		})
		b.StartTimer()
	}
}

// memInUse is heap and stack memory in use after a collection.
func memInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// rawDial opens a socket by hand and reads the 101 response and the hello
// frame, leaving the connection idle with nothing else held.
func rawDial(host, tok string) (net.Conn, error) {
	c, err := net.Dial("tcp", host)
	if err != nil {
		return nil, err
	}
	req := "GET /ws?token=" + tok + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		_ = c.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(c, 1024)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		_ = c.Close()
		return nil, fmt.Errorf("upgrade: %v %v", resp, err)
	}
	var hdr [4]byte
	if _, err := io.ReadFull(br, hdr[:2]); err != nil {
		_ = c.Close()
		return nil, err
	}
	n := int(hdr[1] & 0x7f)
	if n == 126 {
		if _, err := io.ReadFull(br, hdr[2:4]); err != nil {
			_ = c.Close()
			return nil, err
		}
		n = int(hdr[2])<<8 | int(hdr[3])
	}
	if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
		_ = c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// rawSSEDial opens an SSE stream over a bare TCP connection and reads the
// response head and the stream up to the hello event.
func rawSSEDial(host, tok string) (net.Conn, error) {
	c, err := net.Dial("tcp", host)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET /sse?token="+tok+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
		_ = c.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(c, 1024)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		_ = c.Close()
		return nil, fmt.Errorf("sse: %v %v", resp, err)
	}
	// Chunked body: read until the hello event's data line went by.
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		if strings.Contains(line, `"event":"hello"`) {
			break
		}
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}
