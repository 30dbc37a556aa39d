package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"orderpush/pkg/logging"
)

// syncBuffer is a bytes.Buffer safe for go-redis's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRouteRedis: go-redis's own lines come out as slog JSON records. A
// sub-millisecond expiry makes go-redis log a truncation warning, and a
// refused dial logs the pool's failure; both must be JSON.
func TestRouteRedis(t *testing.T) {
	var out syncBuffer
	logging.RouteRedis(slog.New(slog.NewJSONHandler(&out, nil)))
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Set(ctx, "k", "v", 500*time.Microsecond).Err(); err == nil {
		t.Fatal("SET to a closed port succeeded")
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	found := false
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		if d, _ := rec["detail"].(string); strings.Contains(d, "truncating to 1ms") && rec["msg"] == "redis client" {
			found = true
		}
	}
	if !found {
		t.Fatalf("go-redis's line did not come through slog: %q", out.String())
	}
}
