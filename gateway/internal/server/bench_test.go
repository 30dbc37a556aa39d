package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/wstest"
	"orderpush/pkg/poll"
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
		b.Run(fmt.Sprintf("sockets=%d", k), func(b *testing.B) { benchFanout(b, k, wsFanoutDial) })
	}
}

// BenchmarkTransportFanout is BenchmarkSocketFanout for each transport, at
// one size: what a transport's encoding and writing cost per delivery.
func BenchmarkTransportFanout(b *testing.B) {
	const k = 500
	for _, tc := range []struct {
		name string
		dial func(g *gw, tok string) (fanoutClient, error)
	}{
		{"ws", wsFanoutDial},
		{"sse", sseFanoutDial},
		{"socketio-ws", sioFanoutDial},
	} {
		b.Run(fmt.Sprintf("%s/sockets=%d", tc.name, k), func(b *testing.B) { benchFanout(b, k, tc.dial) })
	}
}

// fanoutClient is one client of a fan-out benchmark, past its hello: read
// waits for the next message and tells how many order events it held.
type fanoutClient struct {
	read  func() (int, error)
	close func()
}

func wsFanoutDial(g *gw, tok string) (fanoutClient, error) {
	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, wstest.URL(g.URL, tok, -1), nil)
	if err != nil {
		return fanoutClient{}, err
	}
	if _, _, err := c.Read(ctx); err != nil { // hello
		_ = c.CloseNow()
		return fanoutClient{}, err
	}
	return fanoutClient{
		read: func() (int, error) {
			_, _, err := c.Read(ctx)
			return 1, err
		},
		close: func() { _ = c.CloseNow() },
	}, nil
}

func sseFanoutDial(g *gw, tok string) (fanoutClient, error) {
	c, err := rawSSEDial(strings.TrimPrefix(g.URL, "http://"), tok)
	return rawFanoutClient(c, err, func(br *bufio.Reader) (int, error) {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return 0, nil // the rest of a long data line
		case err != nil:
			return 0, err
		case bytes.HasPrefix(line, []byte("event: order\n")):
			return 1, nil
		}
		return 0, nil
	})
}

func sioFanoutDial(g *gw, tok string) (fanoutClient, error) {
	c, err := sioDialWS(strings.TrimPrefix(g.URL, "http://"), tok)
	return rawFanoutClient(c, err, func(br *bufio.Reader) (int, error) {
		m, err := readWSText(br)
		if err != nil || !strings.HasPrefix(m, `42["order"`) {
			return 0, err // or an Engine.IO ping
		}
		return 1, nil
	})
}

// rawFanoutClient reads a bare connection (dialled with err) through a
// buffer, next reading one line or message of it.
func rawFanoutClient(c net.Conn, err error, next func(*bufio.Reader) (int, error)) (fanoutClient, error) {
	if err != nil {
		return fanoutClient{}, err
	}
	br := bufio.NewReaderSize(c, 16<<10)
	return fanoutClient{
		read:  func() (int, error) { return next(br) },
		close: func() { _ = c.Close() },
	}, nil
}

// benchFanout runs a fan-out to k clients that dial opens. Besides
// ns/delivery it reports allocs/delivery: every allocation of the process
// (the clients' too) per event read by a client.
func benchFanout(b *testing.B, k int, dial func(g *gw, tok string) (fanoutClient, error)) {
	url := redistest.SharedURL(b)
	g := startGW(b, url, func(c *Config) { c.SendQueueSize = 4096 })
	mid := redistest.Unique("m")
	tok := merchantToken(b, mid)
	p := newPublisher(b, newRedis(b, url), mid)
	var received atomic.Int64
	var wg sync.WaitGroup
	clients := make([]fanoutClient, 0, k)
	defer func() {
		for _, c := range clients {
			c.close()
		}
		wg.Wait()
	}()
	for range k {
		c, err := dial(g, tok)
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, c)
		wg.Go(func() {
			for {
				n, err := c.read()
				if err != nil {
					return
				}
				received.Add(int64(n))
			}
		})
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mallocs := ms.Mallocs
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
	runtime.ReadMemStats(&ms)
	el := b.Elapsed()
	b.ReportMetric(float64(el.Nanoseconds())/float64(want), "ns/delivery")
	b.ReportMetric(float64(want)/el.Seconds(), "deliveries/s")
	b.ReportMetric(float64(ms.Mallocs-mallocs)/float64(want), "allocs/delivery")
}

// BenchmarkIdle opens K connections of one transport on one in-process
// replica and measures what an idle one costs the process, per connection,
// after a GC: heap spans and stacks in use (bytes/socket), the live heap
// objects alone (live-bytes/socket: fragmentation-free, so the steadier
// figure for a change of a few hundred bytes), stacks alone, and
// goroutines. The clients are bare TCP connections that read up to the
// hello and then sit idle (a socket.io polling client with its next GET
// parked), so their own cost (a net.Conn each, ~0.3 KiB) is nearly all
// gateway. ns/op is the time to open the K
// connections (parallel 64).
func BenchmarkIdle(b *testing.B) {
	for _, tc := range []struct {
		name      string
		transport string // metrics label
		dial      func(host, tok string) (net.Conn, error)
	}{
		{"ws", metrics.TransportWS, rawDial},
		{"sse", metrics.TransportSSE, rawSSEDial},
		{"socketio-ws", metrics.TransportSocketIO, sioDialWS},
		{"socketio-polling", metrics.TransportSocketIO, sioDialPolling},
	} {
		b.Run(tc.name, func(b *testing.B) { benchIdle(b, tc.transport, tc.dial) })
	}
}

func benchIdle(b *testing.B, transport string, dial func(host, tok string) (net.Conn, error)) {
	const k = 2000
	url := redistest.SharedURL(b)
	g := startGW(b, url)
	host := strings.TrimPrefix(g.URL, "http://")
	toks := make([]string, 200)
	for i := range toks {
		toks[i] = merchantToken(b, redistest.Unique("m"))
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
		b.ReportMetric(float64(after.total()-before.total())/k, "bytes/socket")
		b.ReportMetric(float64(after.live-before.live)/k, "live-bytes/socket")
		b.ReportMetric(float64(after.stack-before.stack)/k, "stack-bytes/socket")
		b.ReportMetric(float64(runtime.NumGoroutine()-gr)/k, "goroutines/socket")
		for _, c := range conns {
			_ = c.Close()
		}
		// A polling client that went away is noticed at its ping timeout;
		// the benchmark does not wait for that.
		for _, c := range g.srv.presence.Conns() {
			c.Abort()
		}
		poll.Within(b, 30*time.Second, "every connection closed", func() error {
			if n := g.metric(g.srv.m.ConnectionsOpen.WithLabelValues(transport)); n != 0 {
				return fmt.Errorf("%v connections still open", n)
			}
			return nil
		})
		b.StartTimer()
	}
}

// memUse is memory in use: heap spans, the live objects in them, stacks.
type memUse struct{ heap, live, stack int64 }

func (m memUse) total() int64 { return m.heap + m.stack }

// memInUse is heap and stack memory in use after a collection.
func memInUse() memUse {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memUse{heap: int64(ms.HeapInuse), live: int64(ms.HeapAlloc), stack: int64(ms.StackInuse)}
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

// sioDialWS connects over the websocket transport by hand: the upgrade,
// the open packet, CONNECT, then the CONNECT answer and the hello.
func sioDialWS(host, tok string) (net.Conn, error) {
	c, err := net.Dial("tcp", host)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (net.Conn, error) { _ = c.Close(); return nil, err }
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	req := "GET /socket.io/?EIO=4&transport=websocket&token=" + tok + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		return fail(err)
	}
	br := bufio.NewReaderSize(c, 1024)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		return fail(fmt.Errorf("upgrade: %v %v", resp, err))
	}
	if _, err := readWSText(br); err != nil { // open packet
		return fail(err)
	}
	// "40", masked with a zero key (client frames must be masked).
	if _, err := c.Write([]byte{0x81, 0x82, 0, 0, 0, 0, '4', '0'}); err != nil {
		return fail(err)
	}
	for _, want := range []string{"40{", `42["hello"`} {
		m, err := readWSText(br)
		if err != nil || !strings.HasPrefix(m, want) {
			return fail(fmt.Errorf("want %s..., got %q %v", want, m, err))
		}
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

func readWSText(br *bufio.Reader) (string, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(br, hdr[:2]); err != nil {
		return "", err
	}
	n := int(hdr[1] & 0x7f)
	if n == 126 {
		if _, err := io.ReadFull(br, hdr[2:4]); err != nil {
			return "", err
		}
		n = int(hdr[2])<<8 | int(hdr[3])
	}
	b := make([]byte, n)
	_, err := io.ReadFull(br, b)
	return string(b), err
}

// sioDialPolling connects over polling on one keep-alive connection: the
// handshake, the CONNECT POST, polls until the hello, then one more poll
// left parked (an idle polling client).
func sioDialPolling(host, tok string) (net.Conn, error) {
	c, err := net.Dial("tcp", host)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (net.Conn, error) { _ = c.Close(); return nil, err }
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReaderSize(c, 1024)
	do := func(method, q, body string) (string, error) {
		req := method + " /socket.io/?EIO=4&transport=polling" + q + " HTTP/1.1\r\nHost: " + host + "\r\n"
		if body != "" {
			req += "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n"
		}
		if _, err := c.Write([]byte(req + "\r\n" + body)); err != nil {
			return "", err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return "", err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s %s: %d %s", method, q, resp.StatusCode, b)
		}
		return string(b), err
	}
	open, err := do("GET", "&token="+tok, "")
	if err != nil {
		return fail(err)
	}
	i := strings.Index(open, `"sid":"`)
	if i < 0 {
		return fail(fmt.Errorf("open packet %q", open))
	}
	sid := open[i+7:]
	sid = sid[:strings.IndexByte(sid, '"')]
	if _, err := do("POST", "&sid="+sid, "40"); err != nil {
		return fail(err)
	}
	got := ""
	for !strings.Contains(got, `42["hello"`) {
		p, err := do("GET", "&sid="+sid, "")
		if err != nil {
			return fail(err)
		}
		got += p
	}
	req := "GET /socket.io/?EIO=4&transport=polling&sid=" + sid + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		return fail(err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}
