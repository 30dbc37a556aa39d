package browser_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"orderpush/pkg/wire"
	"orderpush/scripts/launch"
	"orderpush/scripts/prodstack"
)

var bins launch.Binaries

func TestMain(m *testing.M) {
	os.Exit(launch.BuildMain(m, "browser", &bins))
}

func startStack(t *testing.T) *prodstack.Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	s, err := prodstack.Start(ctx, prodstack.Options{Bins: bins})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range append([]*prodstack.Process{s.Nginx}, s.Gateways...) {
				t.Logf("--- %s ---\n%s", p.Name, p.Proc.LogTail(3000))
			}
		}
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func apiCall(t *testing.T, method, url, tok, body string, into any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	if into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatal(err)
		}
	}
}

func place(t *testing.T, s *prodstack.Stack, member, merchant string, price string) wire.Order {
	t.Helper()
	var o wire.Order
	apiCall(t, http.MethodPost, s.API()+"/orders", member,
		fmt.Sprintf(`{"merchantId":%q,"date":%q,"price":%s}`, merchant, time.Now().Format(time.DateOnly), price), &o)
	return o
}

// pendingFromAPI is the order API's pending list of the merchant.
func pendingFromAPI(t *testing.T, s *prodstack.Stack, merchant string) []string {
	t.Helper()
	var body struct {
		Orders []wire.Order `json:"orders"`
	}
	apiCall(t, http.MethodGet, s.API()+"/merchants/"+merchant+"/orders?status=pending&limit=200", s.Token("merchant", merchant), "", &body)
	var nos []string
	for _, o := range body.Orders {
		nos = append(nos, o.OrderNo)
	}
	return nos
}

// toastsSettled is true when no toast is sliding in or out, for a
// screenshot that shows them as a person does. (A full-page capture renders
// running animations at their first frame, so the tests capture the
// viewport.)
const toastsSettled = `[...document.querySelectorAll('#toasts .toast')].every(t => !t.classList.contains('out') && getComputedStyle(t).opacity === '1')`

// TestDashboardThroughNginx is the merchant's view of the production
// topology: the dashboard served by a gateway through nginx, an order placed
// through the balancer shows up as toast and count within a second, "mark
// processed" lowers the count, and when the replica the page is connected
// to stops, the page reconnects to another one and shows the same count
// with no duplicate row.
func TestDashboardThroughNginx(t *testing.T) {
	s := startStack(t)
	const merchant = "m1"
	member := s.Token("member", "u1001")
	b := startBrowser(t)
	ctx := tab(t, b)

	do(t, ctx, chromedp.Navigate(s.URL+"/?token="+s.Token("merchant", merchant)))
	waitJS(t, ctx, "live", `document.getElementById('conn').dataset.state === 'live'`, 10*time.Second)
	if got := text(t, ctx, "count"); got != "0" {
		t.Fatalf("count %q on a new merchant", got)
	}

	// Each order: toast and count within a second of the 201.
	prices := []string{"36.5", "128", "9.9", "58.8"}
	var placed []wire.Order
	var slowest time.Duration
	for i, p := range prices {
		o := place(t, s, member, merchant, p)
		start := time.Now()
		placed = append(placed, o)
		waitJS(t, ctx, fmt.Sprintf("order %d on the page", i+1),
			countIs(i+1)+fmt.Sprintf(` && !!document.querySelector('.order[data-order-no=%q]')`, o.OrderNo)+
				fmt.Sprintf(` && document.body.dataset.toasts === '%d'`, i+1)+
				` && document.querySelector('#toasts .toast-order').textContent.includes('`+wire.NewOrderMsg+`')`,
			time.Second)
		slowest = max(slowest, time.Since(start))
	}
	t.Logf("slowest order-to-page: %s", slowest)

	// Mark processed: the count falls for the page (through the event).
	do(t, ctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`.order[data-order-no=%q] .process`, placed[0].OrderNo))))
	waitJS(t, ctx, "count 3 after mark processed", countIs(3)+fmt.Sprintf(` && !document.querySelector('.order[data-order-no=%q]')`, placed[0].OrderNo), 5*time.Second)
	var got wire.Order
	apiCall(t, http.MethodGet, s.API()+"/orders/"+placed[0].OrderNo, member, "", &got)
	if got.Status != wire.StatusProcessed {
		t.Fatalf("order %s is %s after mark processed", got.OrderNo, got.Status)
	}

	// The dashboard as a merchant sees it, with a fresh toast.
	placed = append(placed, place(t, s, member, merchant, "66"))
	waitJS(t, ctx, "count 4, toast shown", countIs(4)+` && `+toastsSettled, 5*time.Second)
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	artifact(t, "dashboard.png", shot)

	// Stop the replica the page is on, twice: gracefully (SIGTERM: close
	// 1001) and abruptly (SIGKILL). Each time an order is placed while the
	// page is away; it reconnects through nginx with since and shows the
	// same count as the order API, each pending order once.
	for round, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		node := text(t, ctx, "node")
		gw := s.Gateway(node)
		if gw == nil {
			t.Fatalf("the page shows replica %q, not one of the stack's", node)
		}
		if sig == syscall.SIGKILL {
			gw.Proc.Kill()
		} else {
			gw.Proc.Signal(sig)
			if code, err := gw.Proc.Wait(); code != 0 || err != nil {
				t.Errorf("%s after SIGTERM: exit %d %v", node, code, err)
			}
		}
		placed = append(placed, place(t, s, member, merchant, fmt.Sprintf("%d.25", 10+round)))
		want := 5 + round
		waitJS(t, ctx, fmt.Sprintf("reconnected away from %s (%s)", node, sig),
			`document.getElementById('conn').dataset.state === 'live' && document.getElementById('node').textContent !== '`+node+`' && `+countIs(want),
			20*time.Second)
		nos := assertNoDuplicateRows(t, ctx)
		if api := pendingFromAPI(t, s, merchant); !sameSet(nos, api) || len(nos) != want {
			t.Fatalf("after %s of %s the page lists %v, the order API %v", sig, node, nos, api)
		}
		// Resumed (the order was placed while the page was away) or
		// reconnected before it was placed (close 1001 reconnects at once);
		// either way the rows above match the order API.
		if sync := eval[string](t, ctx, `document.getElementById('sync').dataset.last || ''`); !strings.Contains(sync, "Resumed") && !strings.Contains(sync, "Reconnected") {
			t.Errorf("after %s: no reconnect flag (%q)", sig, sync)
		}
		t.Logf("%s on %s: page moved to %s with %d pending", sig, node, text(t, ctx, "node"), want)
	}

	// Phone-sized: one column, nothing wider than the screen.
	do(t, ctx, chromedp.EmulateViewport(390, 844))
	waitJS(t, ctx, "phone layout", `document.documentElement.scrollWidth <= window.innerWidth && document.querySelector('.order .process').getBoundingClientRect().width > 300 && `+toastsSettled, 10*time.Second)
	phone, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	artifact(t, "dashboard-phone.png", phone)

	// (A page served by a gateway directly, calling the order API on
	// another origin with CORS, is TestDashboardIgnoresAPILink.)
}
