package prodstack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"orderpush/scripts/launch"
	"orderpush/scripts/prodstack"
)

// fakeUpstream is a stand-in replica that says who it is and what it saw.
func fakeUpstream(t *testing.T, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
			if err != nil {
				return
			}
			defer c.CloseNow()
			msg := fmt.Sprintf("%s upgrade=%s connection=%s host=%s query=%s", name,
				r.Header.Get("Upgrade"), r.Header.Get("Connection"), r.Host, r.URL.RawQuery)
			_ = c.Write(r.Context(), websocket.MessageText, []byte(msg))
			_, _, _ = c.Read(r.Context()) // until the client closes
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"name": name, "path": r.URL.Path, "host": r.Host,
			"prefix": r.Header.Get("X-Forwarded-Prefix"), "xff": r.Header.Get("X-Forwarded-For"),
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func hostOf(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

func getJSON(t *testing.T, url string) (int, map[string]string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := map[string]string{}
	_ = json.Unmarshal(b, &m) // the stand-ins answer flat objects
	m["raw"], m["type"] = string(b), resp.Header.Get("Content-Type")
	return resp.StatusCode, m
}

// TestNginxRoutesOfTheTemplate runs a real nginx on the shared template in
// front of stand-in replicas and checks what the stack relies on: round
// robin, WebSocket upgrade, the /api prefix, failover past a dead replica,
// the JSON answer when none is left, hidden metrics, token-free logs.
func TestNginxRoutesOfTheTemplate(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	gw1, gw2 := fakeUpstream(t, "gw1"), fakeUpstream(t, "gw2")
	api := fakeUpstream(t, "api")
	dead := "127.0.0.1:" + freePort(t) // nothing listens here
	listen := "127.0.0.1:" + freePort(t)

	tmpl, err := os.ReadFile(filepath.Join(root, prodstack.TemplatePath))
	if err != nil {
		t.Fatal(err)
	}
	site, err := prodstack.RenderTemplate(string(tmpl), map[string]string{
		"NGINX_LISTEN":      listen,
		"NGINX_RESOLVER":    "127.0.0.1",
		"GATEWAY_UPSTREAM":  prodstack.UpstreamServers([]string{hostOf(gw1), hostOf(gw2)}),
		"ORDERAPI_UPSTREAM": prodstack.UpstreamServers([]string{dead, hostOf(api)}),
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	n, err := prodstack.WriteNginx(nginxBin(t), dir, site)
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "nginx.log")
	p := launch.StartT(t, launch.Spec{Name: "nginx", Path: n.Bin, Args: n.Args(), LogFile: logFile})
	base := "http://" + listen
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := p.WaitHTTP(ctx, base+"/nginx-health"); err != nil {
		t.Fatal(err)
	}

	// Round robin over the gateways for the dashboard, Host kept with port.
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		_, m := getJSON(t, base+"/")
		seen[m["name"]] = true
		if m["host"] != listen {
			t.Errorf("gateway saw Host %q, want %q", m["host"], listen)
		}
	}
	if !seen["gw1"] || !seen["gw2"] {
		t.Errorf("4 requests reached %v, want both gateways", seen)
	}

	// The order API under /api/, prefix stripped, past the dead replica.
	for i := 0; i < 3; i++ {
		code, m := getJSON(t, base+"/api/merchants/m1/orders?status=pending")
		if code != http.StatusOK || m["name"] != "api" || m["path"] != "/merchants/m1/orders" || m["prefix"] != "/api" {
			t.Fatalf("GET /api/merchants/m1/orders: %d %v", code, m)
		}
	}

	// A socket through nginx: upgraded, with the query intact.
	wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel()
	c, _, err := websocket.Dial(wctx, "ws://"+listen+"/ws?token=secret-token-value", nil)
	if err != nil {
		t.Fatalf("socket through nginx: %v", err)
	}
	_, msg, err := c.Read(wctx)
	c.CloseNow()
	if err != nil || !strings.Contains(string(msg), "upgrade=websocket connection=upgrade") ||
		!strings.Contains(string(msg), "host="+listen) || !strings.Contains(string(msg), "query=token=secret-token-value") {
		t.Fatalf("socket saw %q, %v", msg, err)
	}

	for _, path := range []string{"/metrics", "/api/metrics"} {
		if code, _ := getJSON(t, base+path); code != http.StatusNotFound {
			t.Errorf("%s through nginx: %d, want 404", path, code)
		}
	}

	// No replica left: the contract's JSON 503, for the API and sockets.
	api.Close()
	code, m := getJSON(t, base+"/api/orders/x")
	if code != http.StatusServiceUnavailable || !strings.Contains(m["raw"], `"code":"unavailable"`) || !strings.Contains(m["type"], "application/json") {
		t.Errorf("API with no replica: %d %v", code, m)
	}
	gw1.Close()
	gw2.Close()
	_, resp, err := websocket.Dial(wctx, "ws://"+listen+"/ws?token=secret-token-value", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("socket with no gateway: %v %v", resp, err)
	}

	p.Stop(5 * time.Second)
	log, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), "secret-token-value") {
		t.Errorf("the token reached nginx's log:\n%s", log)
	}
	if !strings.Contains(string(log), `"uri":"/ws"`) {
		t.Errorf("the access log has no /ws line:\n%s", log)
	}
}
