package browser_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"orderpush/scripts/browser"
	"orderpush/scripts/launch"
)

// Helpers shared by the tests of this package: one Chromium per test, pages
// inspected through the DOM the way a person sees them.

func startBrowser(t *testing.T) *browser.Browser {
	t.Helper()
	exe, err := browser.ExecPath()
	if err != nil {
		t.Fatal(err)
	}
	b, err := browser.Start(context.Background(), exe, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if ex := b.Exceptions(); len(ex) > 0 {
			t.Errorf("the page threw: %s", strings.Join(ex, "; "))
		}
		b.Close()
	})
	return b
}

func tab(t *testing.T, b *browser.Browser) context.Context {
	t.Helper()
	ctx, cancel, err := b.Tab()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return ctx
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// waitJS waits until the expression is truthy; on timeout it fails with
// what the page shows.
func waitJS(t *testing.T, ctx context.Context, what, js string, timeout time.Duration) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](js,
		chromedp.WithPollingInterval(10*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		t.Fatalf("waiting %s for %s: %v\npage: %s", timeout, what, err, pageState(ctx))
	}
}

// pageState is what a person would read on the page, for failure messages.
func pageState(ctx context.Context) string {
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		conn: document.getElementById('conn').dataset.state + ' ' + document.getElementById('conn-text').textContent,
		count: document.getElementById('count').textContent,
		node: document.getElementById('node').textContent,
		sync: document.getElementById('sync').dataset.last || '',
		rows: [...document.querySelectorAll('#orders .order')].map(li => li.dataset.orderNo),
		signin: !document.getElementById('signin').hidden,
		signinError: document.getElementById('signin-error').textContent,
		listError: document.getElementById('list-error').textContent,
		body: {...document.body.dataset},
	})`))
	if err != nil {
		return "(cannot read the page: " + err.Error() + ")"
	}
	return s
}

// rows returns the order numbers of the pending list, top to bottom.
func rows(t *testing.T, ctx context.Context) []string {
	t.Helper()
	return eval[[]string](t, ctx, `[...document.querySelectorAll('#orders .order')].map(li => li.dataset.orderNo)`)
}

func text(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	return eval[string](t, ctx, fmt.Sprintf(`document.getElementById(%q).textContent`, id))
}

// countIs is the JS condition "the big number shows n".
func countIs(n int) string {
	return fmt.Sprintf(`document.getElementById('count').textContent === '%d'`, n)
}

func assertNoDuplicateRows(t *testing.T, ctx context.Context) []string {
	t.Helper()
	got := rows(t, ctx)
	seen := map[string]bool{}
	for _, no := range got {
		if seen[no] {
			t.Fatalf("order %s is shown twice: %v", no, got)
		}
		seen[no] = true
	}
	return got
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// artifact saves b as <repo>/artifacts/<name> (git-ignored; CI keeps it).
func artifact(t *testing.T, name string, b []byte) string {
	t.Helper()
	root, err := launch.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("saved %s", p)
	return p
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
