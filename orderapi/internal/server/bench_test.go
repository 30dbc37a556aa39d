package server_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"orderpush/orderapi/internal/apitest"
	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
)

// BenchmarkCreateOrder measures POST /orders end to end: 64 parallel HTTP
// clients over loopback with keep-alive, the whole transaction (order,
// merchant bump, event row) committed on SQLite or PostgreSQL, and the
// Redis publish before the answer. Orders spread over 32 merchants, so the
// per-merchant row lock is contended the way a busy shop would be. It
// reports orders/s and latency percentiles as seen by the clients.
//
//	go test -run '^$' -bench CreateOrder -benchtime 3s -count 3 ./orderapi/internal/server/
func BenchmarkCreateOrder(b *testing.B) {
	for _, dialect := range apitest.Dialects {
		b.Run(dialect, func(b *testing.B) { benchCreate(b, dialect) })
	}
}

// benchClients is the number of concurrent HTTP clients.
const benchClients = 64

func benchCreate(b *testing.B, dialect string) {
	env := apitest.Start(b, apitest.Options{Dialect: dialect})
	tok := "Bearer " + apitest.Token(b, token.RoleMember, "u1001")
	merchants := make([]string, 32)
	for i := range merchants {
		merchants[i] = redistest.Unique("bench")
	}
	// 64 clients in all, issue 6's figure, whatever GOMAXPROCS is.
	parallelism := max(1, benchClients/runtime.GOMAXPROCS(0))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: benchClients}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	var (
		mu   sync.Mutex
		lats []time.Duration
		next atomic.Int64
	)
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			m := merchants[next.Add(1)%int64(len(merchants))]
			req, _ := http.NewRequest(http.MethodPost, env.URL+"/orders",
				strings.NewReader(`{"merchantId":"`+m+`","date":"2022-06-22","price":36}`))
			req.Header.Set("Authorization", tok)
			req.Header.Set("Content-Type", "application/json")
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mine = append(mine, time.Since(t0))
			if resp.StatusCode != http.StatusCreated {
				b.Errorf("POST /orders: %d", resp.StatusCode)
				return
			}
		}
		mu.Lock()
		lats = append(lats, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if len(lats) != b.N {
		b.Fatalf("%d answers for %d orders", len(lats), b.N)
	}
	slices.Sort(lats)
	pct := func(p float64) float64 {
		return float64(lats[min(len(lats)-1, int(p*float64(len(lats))))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "orders/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	if b.N >= 1000 {
		// The rows are really there: a run that answered without storing is
		// no measurement.
		if n := env.Count(b, "orders"); n != b.N {
			b.Fatalf("%d orders stored for %d answered", n, b.N)
		}
	}
}

// BenchmarkCreateOrderHandler drives POST /orders through the server's
// handler with httptest, no socket and no HTTP client in the figures: 64
// requests in flight on a real SQLite store and Redis, so allocs/op are
// the order API's own per order (handler, group commit, publish).
//
//	go test -run '^$' -bench CreateOrderHandler -benchmem -count 3 ./orderapi/internal/server/
func BenchmarkCreateOrderHandler(b *testing.B) {
	env := apitest.Start(b, apitest.Options{})
	h := env.Server.Handler()
	tok := "Bearer " + apitest.Token(b, token.RoleMember, "u1001")
	merchants := make([]string, 32)
	for i := range merchants {
		merchants[i] = redistest.Unique("bench")
	}
	var next atomic.Int64
	b.SetParallelism(max(1, benchClients/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m := merchants[next.Add(1)%int64(len(merchants))]
			req := httptest.NewRequest(http.MethodPost, "/orders",
				strings.NewReader(`{"merchantId":"`+m+`","date":"2022-06-22","price":36}`))
			req.Header.Set("Authorization", tok)
			req.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusCreated {
				b.Errorf("POST /orders: %d %s", w.Code, w.Body)
				return
			}
		}
	})
	b.StopTimer()
	if n := env.Count(b, "orders"); n != b.N {
		b.Fatalf("%d orders stored for %d answered", n, b.N)
	}
}
