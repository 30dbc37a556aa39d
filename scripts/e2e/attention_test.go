package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"orderpush/pkg/pgtest"
	"orderpush/pkg/poll"
	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
	"orderpush/pkg/webhook"
	"orderpush/pkg/webhooktest"
	"orderpush/pkg/wire"
	"orderpush/scripts/launch"
)

// TestAttentionAlertSurvivesKill is the attention webhook across a crash
// of the order API binary (PROTOCOL.md "Receipts and attention": pending
// webhooks are kept in the database and survive restarts). An order for a
// merchant without a socket fires order.undelivered at once; the receiver
// refuses it (500), so it stays pending; the order API is killed with
// SIGKILL and started again on the same SQLite file; then the receiver
// accepts. The alert arrives from the new process with the same event id
// and a valid signature, and the order shows it completed.
func TestAttentionAlertSurvivesKill(t *testing.T) { alertSurvivesKill(t, "") }

// TestAttentionAlertSurvivesKillPostgres is the same on PostgreSQL.
func TestAttentionAlertSurvivesKillPostgres(t *testing.T) {
	alertSurvivesKill(t, pgtest.NewDatabase(t))
}

func alertSurvivesKill(t *testing.T, databaseURL string) {
	secret := launch.NewSecret()
	rcv := webhooktest.New(t, []byte(secret))
	var accept atomic.Bool
	rcv.SetAnswer(func(int, webhook.Event) int {
		if accept.Load() {
			return http.StatusNoContent
		}
		return http.StatusInternalServerError
	})
	sys := launch.StartSystemT(t, launch.SystemSpec{
		Bins: bins, RedisURL: redistest.SharedURL(t), DatabaseURL: databaseURL, Gateways: 1,
		OrderAPIEnv: []string{
			"ATTENTION_WEBHOOK_URL=" + rcv.URL(), "ATTENTION_WEBHOOK_SECRET=" + secret,
			// Only order.undelivered is the subject here.
			"UNSEEN_AFTER=1h",
		},
	})
	m := redistest.Unique("e2e-att")
	o := placeOne(t, sys, m)
	merchant := sys.Token(token.RoleMerchant, m)
	alerts := func() []wire.Alert { return alertsOf(t, sys, merchant, o.OrderNo) }

	// Refused and recorded as pending: at least one attempt on the order,
	// no completion.
	poll.TrueWithin(t, 30*time.Second, "a refused attempt recorded on the order", func() bool {
		a := alerts()
		return len(rcv.Of(o.OrderNo, wire.AlertUndelivered)) > 0 && len(a) == 1 && a[0].Attempts >= 1
	})
	if a := alerts(); a[0].Type != wire.AlertUndelivered || a[0].CompletedAt != nil {
		t.Fatalf("alerts before the kill: %+v", a)
	}
	sys.OrderAPI.Proc.Kill()
	killed := time.Now()
	refused := len(rcv.Of(o.OrderNo, wire.AlertUndelivered))

	sys.RestartOrderAPI(t)
	accept.Store(true)
	// The next attempt comes after the backoff of the attempts so far (1-2 s
	// here), or, when the kill caught an attempt in flight, when its 30 s
	// lease ends.
	poll.TrueWithin(t, 60*time.Second, "the alert completed after the restart", func() bool {
		a := alerts()
		return len(a) == 1 && a[0].CompletedAt != nil
	})

	got := rcv.Of(o.OrderNo, wire.AlertUndelivered)
	want := webhook.Event{ID: webhook.EventID(wire.AlertUndelivered, o.OrderNo), Type: wire.AlertUndelivered,
		OrderNo: o.OrderNo, MerchantID: m, PlacedAt: o.CreatedAt.UTC().Format(wire.TimeLayout)}
	for i, d := range got {
		if d.EventID != want.ID || d.Event != want || !d.SigOK || len(d.Problems) > 0 {
			t.Errorf("attempt %d: id header %q, body %s, signature ok %v, problems %v; want %+v",
				i+1, d.EventID, d.Body, d.SigOK, d.Problems, want)
		}
	}
	last := got[len(got)-1]
	if last.Status != http.StatusNoContent || !last.At.After(killed) {
		t.Fatalf("the last attempt answered %d at %s (killed at %s): want the accepted one, after the restart",
			last.Status, last.At.Format(time.StampMilli), killed.Format(time.StampMilli))
	}
	for i, d := range got[:len(got)-1] {
		if d.Status != http.StatusInternalServerError {
			t.Fatalf("attempt %d answered %d before the last: more than one accepted", i+1, d.Status)
		}
	}
	// Every attempt the database recorded is one the receiver got; an
	// attempt the kill cut short was received but never recorded.
	a := alerts()[0]
	if !a.FiredAt.Before(killed) || !a.CompletedAt.After(killed) {
		t.Fatalf("alert %+v: want fired before the kill (%s) and completed after it", a, killed.Format(time.StampMilli))
	}
	if a.Attempts < refused || a.Attempts > len(got) || a.Attempts < 2 {
		t.Fatalf("alert %+v: attempts outside [%d, %d] (refused %d before the kill)", a, max(refused, 2), len(got), refused)
	}
	t.Logf("%d attempts received (%d before the kill), %d recorded", len(got), refused, a.Attempts)
	if n := metric(t, sys.OrderAPI.URL, `orderapi_webhook_attempts_total{outcome="ok",type="order.undelivered"}`); n != "1" {
		t.Fatalf("the restarted order API counts %s ok attempts, want 1", n)
	}
}

// placeOne places an order for merchant m as a member.
func placeOne(t *testing.T, sys *launch.System, m string) wire.Order {
	t.Helper()
	code, body := call(t, http.MethodPost, sys.OrderAPI.URL+"/orders", sys.Token(token.RoleMember, "u1"),
		`{"merchantId":"`+m+`","date":"2022-06-22","price":7}`)
	var o wire.Order
	if code != http.StatusCreated || json.Unmarshal(body, &o) != nil {
		t.Fatalf("place: %d %s", code, body)
	}
	return o
}

// alertsOf reads the alerts of an order.
func alertsOf(t *testing.T, sys *launch.System, tok, orderNo string) []wire.Alert {
	t.Helper()
	code, body := call(t, http.MethodGet, sys.OrderAPI.URL+"/orders/"+orderNo, tok, "")
	var o struct {
		Alerts *[]wire.Alert `json:"alerts"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &o) != nil || o.Alerts == nil {
		t.Fatalf("GET /orders/%s: %d %s: want the order with alerts", orderNo, code, body)
	}
	return *o.Alerts
}

// metric is the value of one series on a /metrics page, "" when absent.
func metric(t *testing.T, baseURL, series string) string {
	t.Helper()
	for line := range strings.SplitSeq(get(t, baseURL+"/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// TestREADMEWebhookReceiver runs the receiver example of orderapi/README.md
// ("The attention webhook") as written, on a free port, behind the real
// order API: it accepts the binary's signed alert, which completes, and
// refuses a request whose signature does not match.
func TestREADMEWebhookReceiver(t *testing.T) {
	root, err := launch.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "orderapi", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## The attention webhook\n")
	_, code, ok2 := strings.Cut(section, "\n```go\n")
	code, _, ok3 := strings.Cut(code, "\n```\n")
	const exampleAddr = `"127.0.0.1:9000"`
	if !ok || !ok2 || !ok3 || !strings.Contains(code, exampleAddr) {
		t.Fatalf("orderapi/README.md: no Go receiver listening on %s in \"The attention webhook\"", exampleAddr)
	}
	port, err := launch.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(strings.Replace(code, exampleAddr, strconv.Quote(addr), 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.CommandContext(t.Context(), "go", "build", "-o", "receiver", "main.go")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the README's receiver does not build: %v\n%s", err, out)
	}
	secret := launch.NewSecret()
	var out launch.Output
	rcv := launch.StartT(t, launch.Spec{Name: "readme-receiver", Path: filepath.Join(dir, "receiver"),
		Env: []string{"ATTENTION_WEBHOOK_SECRET=" + secret}, Output: &out})
	t.Cleanup(rcv.Kill) // it has no SIGTERM handling: end it before StartT's check
	hook := "http://" + addr + "/hook"
	poll.TrueWithin(t, 10*time.Second, "the README's receiver listening", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil || rcv.Exited()
	})
	if rcv.Exited() {
		t.Fatalf("the README's receiver exited:\n%s", out.String())
	}

	sys := launch.StartSystemT(t, launch.SystemSpec{
		Bins: bins, RedisURL: redistest.SharedURL(t), Gateways: 1,
		OrderAPIEnv: []string{"ATTENTION_WEBHOOK_URL=" + hook, "ATTENTION_WEBHOOK_SECRET=" + secret, "UNSEEN_AFTER=1h"},
	})
	m := redistest.Unique("e2e-readme")
	o := placeOne(t, sys, m)
	poll.TrueWithin(t, 30*time.Second, "the alert completed by the README's receiver", func() bool {
		a := alertsOf(t, sys, sys.Token(token.RoleMerchant, m), o.OrderNo)
		return len(a) == 1 && a[0].CompletedAt != nil && a[0].Attempts == 1
	})
	if id := webhook.EventID(wire.AlertUndelivered, o.OrderNo); !strings.Contains(out.String(), "alert "+id+": ") {
		t.Fatalf("the receiver did not log alert %s:\n%s", id, out.String())
	}

	forged := []byte(`{"id":"order.undelivered/x","type":"order.undelivered","orderNo":"x","merchantId":"m","placedAt":"2026-11-26T03:17:58.123Z","online":0}`)
	for _, c := range []struct {
		sig  string
		want int
	}{
		{webhook.Sign([]byte(secret), forged), http.StatusNoContent},
		{webhook.Sign([]byte(secret+"x"), forged), http.StatusUnauthorized},
		{"", http.StatusUnauthorized},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, hook, bytes.NewReader(forged))
		req.Header.Set(webhook.HeaderSignature, c.sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("signature %q: the README's receiver answered %d, want %d", c.sig, resp.StatusCode, c.want)
		}
	}
}
