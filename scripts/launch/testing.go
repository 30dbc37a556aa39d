package launch

import (
	"context"
	"os"
	"testing"
)

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

// BuildT builds the binaries into dir for a test (usually from TestMain, see
// BuildMain) and fails the test on error.
func BuildT(t testing.TB, dir string, flags ...string) Binaries {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(t.Context(), root, dir, flags...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TempDir makes a directory for built binaries that outlives single tests;
// the caller removes it (TestMain: defer os.RemoveAll).
func TempDir() (string, error) { return os.MkdirTemp("", "orderpush-bin-") }
