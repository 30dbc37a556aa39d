// Package redistest starts private redis-server processes for tests that
// stop, restart or flush Redis, on free loopback ports. It fails the test,
// never skips it, when redis-server is missing: the test runner installs it.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process. Its methods are safe for concurrent use.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	Port int
	// extra are more redis-server arguments (cluster mode).
	extra []string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start runs a redis-server without persistence on a free port and stops it
// when the test ends. REDIS_SERVER names the binary (default: from PATH).
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: mustRedisServer(t), dir: t.TempDir(), Port: FreePort(t)}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

func mustRedisServer(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("REDIS_SERVER"); bin != "" {
		return bin
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found on PATH (run the README's test command, which installs it): %v", err)
	}
	return bin
}

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is the REDIS_URL of the server.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Client returns a client closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Start (re)starts the process on the same port, empty, and waits until it
// answers PING.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	args := append([]string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log")}, s.extra...)
	cmd := exec.Command(s.bin, args...)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s did not answer PING: %v", s.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, bounded by the deadline
	}
}

// Stop kills the process (SIGKILL: an abrupt failure, nothing flushed).
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart stops and starts the server; it comes back empty.
func (s *Server) Restart() {
	s.Stop()
	s.Start()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// SharedURL returns REDIS_URL when set, else a private server's URL. Tests
// that only read and write their own keys may share a Redis.
func SharedURL(t testing.TB) string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return Start(t).URL()
}

// SharedClient returns a client of SharedURL, closed when the test ends.
func SharedClient(t testing.TB) *redis.Client {
	t.Helper()
	o, err := redis.ParseURL(SharedURL(t))
	if err != nil {
		t.Fatalf("REDIS_URL: %v", err)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Unique returns a name unique to this test run, for key and id prefixes on
// a shared Redis.
func Unique(prefix string) string {
	return fmt.Sprintf("%s%d%04d", prefix, time.Now().UnixNano()%1e9, uniq.Add(1)%10000)
}

var uniq atomic.Int64
