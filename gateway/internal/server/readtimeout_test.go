package server

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestStreamSurvivesReadTimeout: http.Server.ReadTimeout bounds reading a
// request, not the response: a streaming GET that is not hijacked (SSE, a
// socket.io long-poll) keeps its request context and streams to its end
// long after the deadline, because net/http clears the read deadline when
// it starts its background read after the (empty) body. The gateway relies
// on that (and sets no WriteTimeout, which would cut such streams).
func TestStreamSurvivesReadTimeout(t *testing.T) {
	t.Parallel()
	const rt = 300 * time.Millisecond
	stream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 20; i++ { // 1 s: more than three ReadTimeouts
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
			_, _ = w.Write([]byte(": tick\n\n"))
			_ = http.NewResponseController(w).Flush()
		}
		_, _ = w.Write([]byte("event: done\ndata: {}\n\n"))
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: stream, ReadHeaderTimeout: time.Second, ReadTimeout: rt}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })

	// completes reports whether a GET of path streamed to its end.
	completes := func(path string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+l.Addr().String()+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "event: done") {
				return true
			}
		}
		return false
	}
	if !completes("/sse") {
		t.Fatal("an SSE stream was cut by ReadTimeout")
	}
	if !completes("/socket.io/?EIO=4&transport=polling") {
		t.Fatal("a long-poll was cut by ReadTimeout")
	}
}
