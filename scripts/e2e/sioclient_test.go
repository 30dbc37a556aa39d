package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"orderpush/scripts/launch"
)

// sioEvent is one line the socket.io client driver (scripts/sioclient/
// sio.mjs) prints: connect, connect_error, disconnect, upgrade, event, ack.
type sioEvent struct {
	Type      string            `json:"type"`
	ID        string            `json:"id"`
	Recovered bool              `json:"recovered"`
	Transport string            `json:"transport"`
	Message   string            `json:"message"`
	Data      json.RawMessage   `json:"data"`
	Reason    string            `json:"reason"`
	Event     string            `json:"event"`
	Args      []json.RawMessage `json:"args"`
	Tag       string            `json:"tag"`
	Res       json.RawMessage   `json:"res"`
	raw       string
}

// sioArg is the one argument of a merchant event: the frame without its
// event name.
type sioArg struct {
	Seq  uint64          `json:"seq"`
	TS   int64           `json:"ts"`
	Data json.RawMessage `json:"data"`
}

// arg decodes an event's first argument.
func (e sioEvent) arg(t *testing.T) sioArg {
	t.Helper()
	var a sioArg
	if len(e.Args) == 0 || json.Unmarshal(e.Args[0], &a) != nil {
		t.Fatalf("event %s without a frame argument: %s", e.Event, e.raw)
	}
	return a
}

// sioClient is the real socket.io-client package in a Node process.
type sioClient struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan sioEvent
	done   chan struct{}
	mu     sync.Mutex
	stderr strings.Builder
}

// startSIO runs `node sio.mjs url opts` with the pinned socket.io-client
// (scripts/sioclient, installed by scripts/test.sh with npm ci).
func startSIO(t *testing.T, name, url string, opts map[string]any) *sioClient {
	t.Helper()
	root, err := launch.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "scripts", "sioclient")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "socket.io-client")); err != nil {
		t.Fatalf("socket.io-client is not installed: run `npm ci --prefix scripts/sioclient` (scripts/test.sh does): %v", err)
	}
	o, _ := json.Marshal(opts)
	cmd := exec.Command("node", filepath.Join(dir, "sio.mjs"), url, string(o))
	cmd.Dir = dir
	c := &sioClient{name: name, cmd: cmd, events: make(chan sioEvent, 10000), done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{mu: &c.mu, w: &c.stderr}
	c.stdin, err = cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start node: %v", name, err)
	}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e sioEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				continue
			}
			e.raw = sc.Text()
			c.events <- e
		}
	}()
	t.Cleanup(func() {
		_ = c.stdin.Close()
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-c.done
		}
		_ = cmd.Wait()
		if t.Failed() {
			c.mu.Lock()
			t.Logf("%s node stderr: %s", name, c.stderr.String())
			c.mu.Unlock()
		}
	})
	return c
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// next is the next line the client printed, within the deadline.
func (c *sioClient) next(t *testing.T, ctx context.Context) sioEvent {
	t.Helper()
	select {
	case e := <-c.events:
		return e
	case <-c.done:
		t.Fatalf("%s: node exited", c.name)
	case <-ctx.Done():
		t.Fatalf("%s: nothing more from the client: %v", c.name, ctx.Err())
	}
	return sioEvent{}
}

// until returns the first line that matches; every line before it goes to
// skip, which fails the test for lines it does not accept.
func (c *sioClient) until(t *testing.T, ctx context.Context, what string, match func(sioEvent) bool) sioEvent {
	t.Helper()
	for {
		select {
		case e := <-c.events:
			if match(e) {
				return e
			}
			if e.Type == "event" && e.Event == "order" {
				t.Fatalf("%s: waiting for %s, got an unexpected order: %s", c.name, what, e.raw)
			}
		case <-c.done:
			t.Fatalf("%s: node exited while waiting for %s", c.name, what)
		case <-ctx.Done():
			t.Fatalf("%s: no %s: %v", c.name, what, ctx.Err())
		}
	}
}

// send writes one command to the driver.
func (c *sioClient) send(t *testing.T, cmd map[string]any) {
	t.Helper()
	b, _ := json.Marshal(cmd)
	if _, err := fmt.Fprintf(c.stdin, "%s\n", b); err != nil {
		t.Fatalf("%s: send %s: %v", c.name, b, err)
	}
}

// isEvent matches a server event by name.
func isEvent(name string) func(sioEvent) bool {
	return func(e sioEvent) bool { return e.Type == "event" && e.Event == name }
}

// isType matches a driver line by type.
func isType(typ string) func(sioEvent) bool {
	return func(e sioEvent) bool { return e.Type == typ }
}
