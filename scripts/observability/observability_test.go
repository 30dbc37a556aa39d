package observability_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
	"orderpush/pkg/webhooktest"
	"orderpush/scripts/launch"
	"orderpush/scripts/observability"
)

var bins launch.Binaries

func TestMain(m *testing.M) { os.Exit(launch.BuildMain(m, "observability", &bins)) }

// promtool is Debian's (package prometheus); scripts/test.sh installs it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not on PATH: apt-get install prometheus (scripts/test.sh installs it)")
	}
	return p
}

// TestPromtool checks the Prometheus configuration and the alert rules, and
// runs the rules' unit tests (one or more per alert, firing and quiet).
func TestPromtool(t *testing.T) {
	dir := filepath.Join(launch.RepoRootT(t), "deploy", "prometheus")
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"check", "rules", "orderpush.rules.yml"},
		{"test", "rules", "orderpush.rules.test.yml"},
	} {
		cmd := exec.CommandContext(t.Context(), promtool(t), args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestEveryAlertIsTestedAndDocumented: each alert of the rules file has a
// unit test in the test file and a runbook section in the README.
func TestEveryAlertIsTestedAndDocumented(t *testing.T) {
	dir := filepath.Join(launch.RepoRootT(t), "deploy", "prometheus")
	rules, err := observability.RuleExprs(filepath.Join(dir, "orderpush.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join(dir, "orderpush.rules.test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) < 8 {
		t.Errorf("%d alerts, want at least 8", len(rules))
	}
	for name := range rules {
		if !bytes.Contains(tests, []byte("alertname: "+name+"\n")) {
			t.Errorf("alert %s has no unit test in orderpush.rules.test.yml", name)
		}
		if !bytes.Contains(readme, []byte("### "+name+"\n")) {
			t.Errorf("alert %s has no runbook section (### %s) in deploy/prometheus/README.md", name, name)
		}
	}
}

// TestMetricNamesExist runs the real binaries (an order API on SQLite and a
// gateway on Redis), has a socket receive an order, then reads both
// /metrics pages: every metric the dashboard and the alert rules use must
// be there.
func TestMetricNamesExist(t *testing.T) {
	r := launch.RepoRootT(t)
	// The attention webhook's metrics exist only when it is on.
	secret := launch.NewSecret()
	rcv := webhooktest.New(t, []byte(secret))
	sys := launch.StartSystemT(t, launch.SystemSpec{
		Bins: bins, RedisURL: redistest.SharedURL(t), Gateways: 1,
		OrderAPIEnv: []string{"ATTENTION_WEBHOOK_URL=" + rcv.URL(), "ATTENTION_WEBHOOK_SECRET=" + secret},
	})
	gw := sys.Gateways[0]
	merchant := redistest.Unique("obs")

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, gw.WS()+"?token="+sys.Token(token.RoleMerchant, merchant), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if _, msg, err := c.Read(ctx); err != nil || !bytes.Contains(msg, []byte(`"hello"`)) {
		t.Fatalf("hello: %s, %v", msg, err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, sys.OrderAPI.URL+"/orders",
		strings.NewReader(`{"merchantId":"`+merchant+`","date":"2022-06-22","price":36}`))
	req.Header.Set("Authorization", "Bearer "+sys.Token(token.RoleMember, "u1"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /orders: %d", resp.StatusCode)
	}
	for {
		_, msg, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for the order frame: %v", err)
		}
		if bytes.Contains(msg, []byte(`"event":"order"`)) {
			break
		}
	}

	exported := map[string]bool{}
	for _, u := range []string{gw.URL, sys.OrderAPI.URL} {
		resp, err := http.Get(u + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		page, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s/metrics: %d %v", u, resp.StatusCode, err)
		}
		for n := range observability.Exported(string(page)) {
			exported[n] = true
		}
	}

	dash, err := observability.DashboardExprs(filepath.Join(r, "deploy", "grafana", "orderpush.json"))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := observability.RuleExprs(filepath.Join(r, "deploy", "prometheus", "orderpush.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	exprs := map[string][]string{}
	for title, list := range dash {
		exprs["dashboard panel "+title] = list
	}
	for name, e := range rules {
		exprs["alert "+name] = []string{e}
	}
	if len(dash) < 10 || len(rules) < 8 {
		t.Fatalf("read %d panels and %d rules: the files did not parse as expected", len(dash), len(rules))
	}
	for _, m := range observability.Missing(exprs, exported) {
		t.Errorf("not exported by the running binaries: %s", m)
	}
}

// TestMissingFindsWhatIsNotThere: the check reports an unknown name, a
// histogram series of a counter, and a query naming no metric.
func TestMissingFindsWhatIsNotThere(t *testing.T) {
	page := "# HELP a_total x\n# TYPE gateway_a_total counter\ngateway_a_total 1\n" +
		"# TYPE gateway_lag_seconds histogram\ngateway_lag_seconds_bucket{le=\"1\"} 1\n"
	exp := observability.Exported(page)
	got := observability.Missing(map[string][]string{"p": {
		"rate(gateway_a_total[5m])",
		"histogram_quantile(0.9, rate(gateway_lag_seconds_bucket[5m]))",
		"gateway_lag_seconds_count + gateway_a_total_bucket",
		"gateway_nope_total",
		"sum(rate(gatway_a_total[5m]))",
	}}, exp)
	want := []string{
		`p: "sum(rate(gatway_a_total[5m]))" names no metric of the services`,
		"p: gateway_a_total_bucket",
		"p: gateway_nope_total",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Missing:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
