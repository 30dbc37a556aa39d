// Package browser drives the merchant dashboard (gateway/web) in a real
// headless Chromium, for its tests: against a scripted gateway (exact
// protocol corner cases: duplicates, resume, resync, backoff) and against
// the production-like process stack behind nginx (scripts/prodstack).
//
// Chromium is Debian's package (apt-get install -y chromium; the README's
// test command installs it); CHROMIUM_PATH overrides /usr/bin/chromium.
package browser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"

	"github.com/chromedp/chromedp"
)

// ExecPath finds Chromium: CHROMIUM_PATH, else /usr/bin/chromium, else a
// chromium or chromium-browser on PATH.
func ExecPath() (string, error) {
	if p := os.Getenv("CHROMIUM_PATH"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("CHROMIUM_PATH: %w", err)
		}
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium", nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("chromium not found: apt-get install -y chromium (the README's test command does) or set CHROMIUM_PATH")
}

// Browser is one headless Chromium with a fresh profile. Tabs made with Tab
// are independent pages; uncaught page exceptions of every tab are kept and
// reported by Exceptions.
type Browser struct {
	ctx    context.Context // the browser's own context: parent of every tab
	cancel context.CancelFunc

	mu         sync.Mutex
	exceptions []string // guarded by mu
}

// Start launches Chromium with a fresh user data directory. Close ends it.
func Start(ctx context.Context, execPath, profileDir string) (*Browser, error) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(execPath),
		chromedp.UserDataDir(profileDir),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-quic", true),
		// The dashboard beeps through WebAudio; let it start without a click.
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.WindowSize(1280, 900),
	)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		bcancel()
		acancel()
		return nil, fmt.Errorf("start chromium %s: %w", execPath, err)
	}
	return &Browser{ctx: bctx, cancel: func() { bcancel(); acancel() }}, nil
}

// Tab opens a new page. Its cancel func closes it.
func (b *Browser) Tab() (context.Context, context.CancelFunc, error) {
	tctx, cancel := chromedp.NewContext(b.ctx)
	// Open the target here, before another goroutine subscribes to it: the
	// first action on a context must not race with others.
	if err := chromedp.Do(tctx); err != nil {
		cancel()
		return nil, nil, fmt.Errorf("open tab: %w", err)
	}
	go func() {
		for m, err := range chromedp.Console(tctx) {
			if err != nil {
				return
			}
			if m.IsException() {
				b.mu.Lock()
				b.exceptions = append(b.exceptions, fmt.Sprintf("%s (%s:%d)", m.Text, m.URL, m.Line+1))
				b.mu.Unlock()
			}
		}
	}()
	return tctx, cancel, nil
}

// Exceptions returns the uncaught exceptions pages threw so far.
func (b *Browser) Exceptions() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.exceptions...)
}

// Close ends the browser and removes nothing on disk (the caller owns the
// profile directory).
func (b *Browser) Close() { b.cancel() }
