package main_test

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"orderpush/pkg/redistest"
)

// build compiles the binary once per test run.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "orderapi")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

const secret = "JWT_SECRET=0123456789abcdef0123456789abcdef"

// The operator contract: a bad setting exits 1 with one line naming it;
// SIGTERM drains and exits 0 within 10 s.
func TestBinary(t *testing.T) {
	bin := build(t)
	t.Run("bad settings", func(t *testing.T) {
		for name, envs := range map[string][]string{
			"JWT_SECRET":   {},
			"DATABASE_URL": {secret, "DATABASE_URL=oracle://x"},
			"HISTORY_TTL":  {secret, "HISTORY_TTL=soon"},
		} {
			cmd := exec.Command(bin)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, envs...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Errorf("%s: %v; want exit status 1", name, err)
			}
			msg := strings.TrimSuffix(stderr.String(), "\n")
			if strings.Contains(msg, "\n") || !strings.Contains(msg, name) {
				t.Errorf("%s: stderr %q; want one line naming it", name, msg)
			}
		}
	})
	t.Run("sigterm", func(t *testing.T) {
		port := redistest.FreePort(t)
		cmd := exec.Command(bin)
		cmd.Env = []string{secret, "ORDERAPI_ADDR=127.0.0.1:" + strconv.Itoa(port),
			"DATABASE_URL=sqlite://" + filepath.Join(t.TempDir(), "o.db"), "REDIS_URL=" + redistest.SharedURL(t)}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill() //nolint:errcheck // only if the test fails early
		url := "http://127.0.0.1:" + strconv.Itoa(port) + "/readyz"
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := http.Get(url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("not ready in 20 s: %v\n%s", err, stderr.String())
			}
			time.Sleep(50 * time.Millisecond) // poll interval, bounded by the deadline
		}
		start := time.Now()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("exit: %v\n%s", err, stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("still running 10 s after SIGTERM\n%s", stderr.String())
		}
		t.Logf("exited 0 %s after SIGTERM", time.Since(start).Round(time.Millisecond))
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			c.Close()
			t.Fatal("port still open after exit")
		}
		for _, want := range []string{`"msg":"orderapi listening"`, `"msg":"draining"`, `"msg":"stopped"`} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("JSON log lacks %s:\n%s", want, stderr.String())
			}
		}
	})
}
