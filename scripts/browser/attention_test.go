package browser_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"orderpush/pkg/redistest"
	"orderpush/pkg/wire"
)

// seenWithin is how soon a seen on one device stops the alert on the
// merchant's other devices: the contract's figure for order.seen reaching
// every socket.
const seenWithin = time.Second

// TestSeenOnOneDeviceStopsTheAlertOnAnother: two devices (two browsers with
// their own profiles, so two sockets, on different gateway replicas) are
// signed in as the same merchant. An order arrives; both show it unseen
// and repeat the chime. "Got it" on device B stops the repeating alert on
// device A within a second of the click, through the order.seen event.
func TestSeenOnOneDeviceStopsTheAlertOnAnother(t *testing.T) {
	t.Parallel()
	sys := startSystem(t, 2)
	merchant := redistest.Unique("web-seen")
	tok := sys.Token("merchant", merchant)
	devices := map[string]context.Context{}
	for i, name := range []string{"A", "B"} {
		ctx := tab(t, startBrowser(t))
		do(t, ctx, chromedp.Navigate(sys.Gateways[i].URL+"/?token="+tok))
		waitJS(t, ctx, "device "+name+" live", `document.getElementById('conn').dataset.state === 'live' && document.body.dataset.role === 'leader'`, 15*time.Second)
		setRepeat(t, ctx, 3)
		devices[name] = ctx
	}
	a, b := devices["A"], devices["B"]
	waitOnline(t, sys, merchant, 2, 5*time.Second)

	o := placeOn(t, sys, merchant, "42")
	row := fmt.Sprintf(`.order[data-order-no=%q]`, o.OrderNo)
	for name, ctx := range devices {
		waitJS(t, ctx, "the order unseen and alerting on device "+name,
			fmt.Sprintf(`!!document.querySelector(%q) && document.body.dataset.unseen === '1' && document.body.dataset.alerting === 'true'`, row+".unseen"), 5*time.Second)
	}
	// The chime repeats (every 3 s here) on both devices.
	for name, ctx := range devices {
		waitJS(t, ctx, "a repeated chime on device "+name, `Number(document.body.dataset.chimes || 0) >= 2`, 10*time.Second)
	}

	// Measured in the pages, from the click event on B to the moment A's
	// alert state flips; both browsers read the same system clock. So the
	// test's own round trips to two browsers on a busy machine do not count.
	do(t, a, chromedp.Evaluate[chromedp.Void](`new MutationObserver((_, obs) => {
		if (document.body.dataset.alerting === 'false') { window.stoppedAt = Date.now(); obs.disconnect(); }
	}).observe(document.body, { attributes: true, attributeFilter: ['data-alerting'] })`))
	do(t, b, chromedp.Evaluate[chromedp.Void](`document.addEventListener('click', () => { window.clickedAt ??= Date.now(); }, true)`))
	do(t, b, chromedp.Click(chromedp.CSS(row+" .got-it")))
	stopped := `document.body.dataset.alerting === 'false' && document.body.dataset.unseen === '0' && !document.querySelector('.order.unseen')`
	waitJS(t, a, "the alert stopped on device A", stopped+` && window.stoppedAt > 0`, 10*time.Second)
	clickedAt, stoppedAt := eval[int64](t, b, `window.clickedAt`), eval[int64](t, a, `window.stoppedAt`)
	took := time.Duration(stoppedAt-clickedAt) * time.Millisecond
	t.Logf("device A stopped alerting %s after the click on device B", took)
	if clickedAt == 0 || took < 0 || took > seenWithin {
		t.Fatalf("device A stopped alerting %s after the click on device B (clicked at %d), want within %s", took, clickedAt, seenWithin)
	}
	waitJS(t, b, "the alert stopped on device B", stopped, time.Second)

	// Stopped, not paused: no chime on A for longer than the repeat
	// interval. (An observation window, not a synchronisation.)
	chimes := chimesOf(t, a)
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if n := chimesOf(t, a); n != chimes {
			t.Fatalf("device A chimed again (%d -> %d) after the order was seen", chimes, n)
		}
	}
	var got wire.Order
	apiCall(t, http.MethodGet, sys.OrderAPI.URL+"/orders/"+o.OrderNo, tok, "", &got)
	if got.SeenAt == nil || got.Status != wire.StatusPending {
		t.Fatalf("order after Got it: seenAt %v, status %s; want seen and still pending", got.SeenAt, got.Status)
	}
}

// setRepeat chooses the repeating chime's interval in the page's settings,
// as a person does with the menu.
func setRepeat(t *testing.T, ctx context.Context, seconds int) {
	t.Helper()
	do(t, ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`{ const r = document.getElementById('repeat'); r.value = '%d'; r.dispatchEvent(new Event('change')); }`, seconds)))
	if v := eval[string](t, ctx, `document.getElementById('repeat').value`); v != fmt.Sprint(seconds) {
		t.Fatalf("the repeat menu shows %q, want %d", v, seconds)
	}
}

// chimesOf is how often the page chimed (it counts in <body data-chimes>).
func chimesOf(t *testing.T, ctx context.Context) int {
	t.Helper()
	return eval[int](t, ctx, `Number(document.body.dataset.chimes || 0)`)
}
