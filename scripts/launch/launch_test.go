package launch_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"orderpush/pkg/token"
	"orderpush/scripts/launch"
)

// The test binary doubles as the trivial process under test: with
// LAUNCH_HELPER set, TestMain runs that mode instead of the tests.
func TestMain(m *testing.M) {
	switch os.Getenv("LAUNCH_HELPER") {
	case "":
		os.Exit(m.Run())
	case "http":
		helperHTTP()
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		select {}
	case "exit3":
		fmt.Println("about to fail")
		os.Exit(3)
	}
}

// helperHTTP answers /readyz on HELPER_ADDR and exits 0 on SIGTERM.
func helperHTTP() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	l, err := net.Listen("tcp", os.Getenv("HELPER_ADDR"))
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			fmt.Fprintln(w, "ok")
			return
		}
		http.NotFound(w, r)
	})}
	go srv.Serve(l)
	fmt.Println("serving", l.Addr())
	<-ctx.Done()
	_ = srv.Close()
	fmt.Println("bye")
	os.Exit(0)
}

func helper(t *testing.T, mode string, env ...string) launch.Spec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return launch.Spec{
		Name:    mode,
		Path:    exe,
		Env:     append([]string{"LAUNCH_HELPER=" + mode}, env...),
		LogFile: filepath.Join(t.TempDir(), mode+".log"),
	}
}

func TestStartReadyStop(t *testing.T) {
	t.Parallel()
	port, err := launch.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p := launch.StartT(t, helper(t, "http", "HELPER_ADDR="+addr))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx, "http://"+addr); err != nil {
		t.Fatal(err)
	}
	if p.Exited() {
		t.Fatal("exited while serving")
	}
	code, err := p.Stop(5 * time.Second)
	if code != 0 || err != nil {
		t.Fatalf("stop: %d %v", code, err)
	}
	if log := p.LogTail(1 << 10); !strings.Contains(log, "serving") || !strings.Contains(log, "bye") {
		t.Fatalf("log %q lacks the helper's lines", log)
	}
}

func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	t.Parallel()
	p := launch.StartT(t, helper(t, "stubborn"))
	waitLog(t, p, "ignoring SIGTERM")
	code, err := p.Stop(200 * time.Millisecond)
	if !errors.Is(err, launch.ErrStopTimeout) || code != -1 {
		t.Fatalf("stop: %d %v, want -1 and ErrStopTimeout", code, err)
	}
	// Stop again gives the same answer.
	if _, err2 := p.Stop(time.Second); !errors.Is(err2, launch.ErrStopTimeout) {
		t.Fatalf("second stop: %v", err2)
	}
}

func TestExitCodeAndEarlyExit(t *testing.T) {
	t.Parallel()
	p, err := launch.Start(t.Context(), helper(t, "exit3"))
	if err != nil {
		t.Fatal(err)
	}
	port, err := launch.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err = p.WaitReady(ctx, "http://127.0.0.1:"+strconv.Itoa(port))
	if err == nil || !strings.Contains(err.Error(), "status 3") || !strings.Contains(err.Error(), "about to fail") {
		t.Fatalf("WaitReady on a process that exits: %v", err)
	}
	if code, err := p.Wait(); code != 3 || err != nil {
		t.Fatalf("wait: %d %v, want 3 nil", code, err)
	}
}

func TestKill(t *testing.T) {
	t.Parallel()
	p := launch.StartT(t, helper(t, "stubborn"))
	p.Kill()
	if code, err := p.Wait(); code != -1 || err == nil {
		t.Fatalf("wait after kill: %d %v", code, err)
	}
}

func TestContextEndStopsProcess(t *testing.T) {
	t.Parallel()
	port, err := launch.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ctx, cancel := context.WithCancel(t.Context())
	p, err := launch.Start(ctx, helper(t, "http", "HELPER_ADDR="+addr))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(t.Context(), "http://"+addr); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("process still running 10 s after its context ended")
	}
	// SIGTERM, not SIGKILL: the helper exits 0 on its own.
	if code, _ := p.Wait(); code != 0 {
		t.Fatalf("exit status %d, want 0 (graceful SIGTERM)", code)
	}
}

func TestRepoRoot(t *testing.T) {
	t.Parallel()
	root, err := launch.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "scripts", "launch")); err != nil {
		t.Fatalf("root %s does not hold scripts/launch: %v", root, err)
	}
}

func TestBuildReportsFailure(t *testing.T) {
	t.Parallel()
	// An empty directory is no workspace: the error must carry go's output.
	_, err := launch.Build(t.Context(), t.TempDir(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "go build") {
		t.Fatalf("build in an empty dir: %v", err)
	}
}

func TestMintToken(t *testing.T) {
	t.Parallel()
	secret := launch.NewSecret()
	if len(secret) < token.MinSecretLen {
		t.Fatalf("secret of %d bytes", len(secret))
	}
	if secret == launch.NewSecret() {
		t.Fatal("two secrets are equal")
	}
	v, err := token.NewVerifier(token.Config{Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(launch.MintToken([]byte(secret), token.RoleMerchant, "m1", time.Minute))
	if err != nil || c.Role != token.RoleMerchant || c.Subject != "m1" {
		t.Fatalf("verify: %+v %v", c, err)
	}
}

// waitLog polls p's log until it contains s.
func waitLog(t *testing.T, p *launch.Proc, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.LogTail(1<<10), s) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never logged %q", p.Name, s)
		}
		time.Sleep(10 * time.Millisecond) // poll interval, bounded by the deadline
	}
}
