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
	root := launch.RepoRootT(t)
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

// startTemplateNginx runs a real nginx on the shared template in front of
// the given stand-ins and returns its base URL.
func startTemplateNginx(t *testing.T, gateways, apis []string) (base, listen string) {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join(launch.RepoRootT(t), prodstack.TemplatePath))
	if err != nil {
		t.Fatal(err)
	}
	listen = "127.0.0.1:" + freePort(t)
	site, err := prodstack.RenderTemplate(string(tmpl), map[string]string{
		"NGINX_LISTEN": listen, "NGINX_RESOLVER": "127.0.0.1",
		"GATEWAY_UPSTREAM":  prodstack.UpstreamServers(gateways),
		"ORDERAPI_UPSTREAM": prodstack.UpstreamServers(apis),
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	n, err := prodstack.WriteNginx(nginxBin(t), dir, site)
	if err != nil {
		t.Fatal(err)
	}
	p := launch.StartT(t, launch.Spec{Name: "nginx", Path: n.Bin, Args: n.Args(), LogFile: filepath.Join(dir, "nginx.log")})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := p.WaitHTTP(ctx, "http://"+listen+"/nginx-health"); err != nil {
		t.Fatal(err)
	}
	return "http://" + listen, listen
}

// TestNginxLimits: the template's limit_req zones turn a burst from one
// address away with the contract's JSON 429 rate_limited and Retry-After,
// on the socket path (over 40 at once) and the API path (over 100 at
// once); the header a client forges is replaced with its own address.
func TestNginxLimits(t *testing.T) {
	t.Parallel()
	gw, api := fakeUpstream(t, "gw"), fakeUpstream(t, "api")
	base, _ := startTemplateNginx(t, []string{hostOf(gw)}, []string{hostOf(api)})

	burst := func(path string, n int) (passed, limited int) {
		for range n {
			req, _ := http.NewRequest(http.MethodGet, base+path, nil)
			req.Header.Set("X-Forwarded-For", "203.0.113.77")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusTooManyRequests:
				var e struct {
					Error struct{ Code, Message string } `json:"error"`
				}
				if err := json.Unmarshal(b, &e); err != nil || e.Error.Code != "rate_limited" || resp.Header.Get("Retry-After") != "1" ||
					!strings.Contains(resp.Header.Get("Content-Type"), "application/json") {
					t.Fatalf("%s: 429 %q (Retry-After %q, %s)", path, b, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"))
				}
				limited++
			default:
				passed++
			}
		}
		return passed, limited
	}
	// The stand-in answers a plain GET /ws with an error (no upgrade);
	// what counts is whether nginx let the request through.
	if passed, limited := burst("/ws", 80); limited == 0 || passed < 40 || passed > 60 {
		t.Errorf("/ws: %d passed, %d limited; want about 41 passed (burst 40 + refill) and the rest 429", passed, limited)
	}
	if passed, limited := burst("/api/orders/x", 160); limited == 0 || passed < 100 || passed > 140 {
		t.Errorf("/api/: %d passed, %d limited; want about 101 passed and the rest 429", passed, limited)
	}
	// The dashboard is not limited by the socket or API zones.
	if code, _ := getJSON(t, base+"/"); code != http.StatusOK {
		t.Errorf("dashboard after the bursts: %d", code)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.77")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var seen map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&seen); err != nil || seen["xff"] != "127.0.0.1" {
		t.Errorf("X-Forwarded-For reaching a replica %q (%v), want the client's own 127.0.0.1, not the forged one", seen["xff"], err)
	}
}
