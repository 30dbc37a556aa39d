package server

import (
	"bufio"
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

	"orderpush/gateway/internal/metrics"
	"orderpush/pkg/redistest"
)

// BenchmarkIdleSocketIO is BenchmarkIdleSockets for socket.io clients:
// K clients connect (Engine.IO handshake, CONNECT, hello) and then sit
// idle, over the websocket transport or the polling one (a parked long
// poll). The clients are bare TCP connections, so the figures are nearly
// all gateway.
func BenchmarkIdleSocketIO(b *testing.B) {
	for _, transport := range []string{"websocket", "polling"} {
		b.Run(transport, func(b *testing.B) {
			const k = 2000
			g := startGW(b, redistest.SharedURL(b))
			host := strings.TrimPrefix(g.URL, "http://")
			toks := make([]string, 200)
			for i := range toks {
				toks[i] = merchantToken(b, redistest.Unique("m"))
			}
			dial := sioDialWS
			if transport == "polling" {
				dial = sioDialPolling
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
				if transport == "polling" {
					// Closed polls leave sessions that end at their ping timeout.
					for _, s := range g.srv.sio.Engine().Sessions() {
						s.Close("benchmark over")
					}
				}
				eventually(b, 30*time.Second, func() error {
					if n := g.metric(g.srv.m.ConnectionsOpen.WithLabelValues(metrics.TransportSocketIO)); n != 0 {
						return fmt.Errorf("%v sockets still open", n)
					}
					return nil
				})
				b.StartTimer()
			}
		})
	}
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
