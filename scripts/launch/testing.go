package launch

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// RepoRootT is RepoRoot for a test, which it fails when there is no root.
func RepoRootT(t testing.TB) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// StartT starts spec for a test and stops it in the test's cleanup (or the
// kernel kills it if the test binary dies); when the test failed, the end of
// its log is printed. A process still running at cleanup that does not exit
// 0 on SIGTERM fails the test, because a replica must shut down cleanly; a
// test that wants otherwise calls Kill or Stop itself first. A start error
// fails the test.
func StartT(t testing.TB, spec Spec) *Proc {
	t.Helper()
	// Not t.Context(): it ends before cleanups run, and the cleanup below
	// must see whether the process was still running to judge its exit.
	p, err := Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		exited := p.Exited()
		code, err := p.Stop(StopTimeout)
		if !exited && (err != nil || code != 0) {
			t.Errorf("%s: stop: exit status %d, %v", p.Name, code, err)
		}
		if t.Failed() && p.LogFile != "" {
			t.Logf("--- last lines of %s (%s) ---\n%s", p.Name, p.LogFile, p.LogTail(8192))
		}
	})
	return p
}

// BuildMain is the body of a TestMain that needs the services as
// processes: it builds them once into a temporary directory (passing flags
// to go build, e.g. -race), stores them in *bins, runs the tests and removes
// the directory. It returns the exit code for os.Exit.
func BuildMain(m *testing.M, name string, bins *Binaries, flags ...string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "%s: build the services: %v\n", name, err)
		return 1
	}
	root, err := RepoRoot()
	if err != nil {
		return fail(err)
	}
	dir, err := TempDir()
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	if *bins, err = Build(ctx, root, dir, flags...); err != nil {
		return fail(err)
	}
	fmt.Fprintf(os.Stderr, "%s: built gateway and orderapi %v in %s\n", name, flags, time.Since(start).Round(time.Millisecond))
	return m.Run()
}

// TempDir makes a directory for built binaries that outlives single tests;
// the caller removes it (TestMain: defer os.RemoveAll).
func TempDir() (string, error) { return os.MkdirTemp("", "orderpush-bin-") }
