package web_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"orderpush/gateway/web"
)

func handler(t testing.TB, api string) *web.Handler {
	t.Helper()
	h, err := web.New(web.Options{APIURL: api})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v // what net/http takes from the request line or Host header
			continue
		}
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestServesDashboard(t *testing.T) {
	t.Parallel()
	h := handler(t, "")
	cases := []struct {
		path, contentType, contains string
	}{
		{"/", "text/html", `<div id="count"`},
		{"/?token=abc&api=https://evil.example", "text/html", `<meta name="orderpush-api" content="/api">`},
		{"/index.html", "text/html", `type="module" src="app.js"`},
		{"/app.js", "javascript", "您收到一条新订单，赶快去处理吧"},
		{"/client.js", "javascript", "export const VERSION = '"},
		{"/app.css", "text/css", ".count"},
		{"/favicon.svg", "image/svg+xml", "<svg"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			t.Parallel()
			res := get(t, h, http.MethodGet, c.path, nil)
			b := body(t, res)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d", res.StatusCode)
			}
			if ct := res.Header.Get("Content-Type"); !strings.Contains(ct, c.contentType) {
				t.Errorf("Content-Type %q, want %q", ct, c.contentType)
			}
			if !strings.Contains(b, c.contains) {
				t.Errorf("body does not contain %q", c.contains)
			}
			for _, k := range []string{"ETag", "Content-Security-Policy"} {
				if res.Header.Get(k) == "" {
					t.Errorf("no %s header", k)
				}
			}
			if got := res.Header.Get("Referrer-Policy"); got != "no-referrer" {
				t.Errorf("Referrer-Policy %q", got)
			}
		})
	}
}

// connectSrc returns the CSP's connect-src sources.
func connectSrc(t *testing.T, csp string) []string {
	t.Helper()
	for _, d := range strings.Split(csp, ";") {
		f := strings.Fields(d)
		if len(f) > 0 && f[0] == "connect-src" {
			return f[1:]
		}
	}
	t.Fatalf("no connect-src in %q", csp)
	return nil
}

// TestAPIOriginComesFromTheGateway is issue 9's dashboard item: the page
// learns the order API's address from the gateway only, and its CSP lets
// it connect to its own origin and that API, nowhere else.
func TestAPIOriginComesFromTheGateway(t *testing.T) {
	t.Parallel()
	cases := []struct {
		api, meta string
		connect   []string
	}{
		{"", "/api", []string{"'self'", "ws://gw.example:8080", "wss://gw.example:8080"}},
		{"/api", "/api", []string{"'self'", "ws://gw.example:8080", "wss://gw.example:8080"}},
		{"http://127.0.0.1:8090", "http://127.0.0.1:8090", []string{"'self'", "ws://gw.example:8080", "wss://gw.example:8080", "http://127.0.0.1:8090"}},
		{"https://API.shop.example/v1/", "https://api.shop.example/v1", []string{"'self'", "ws://gw.example:8080", "wss://gw.example:8080", "https://api.shop.example"}},
	}
	for _, c := range cases {
		h := handler(t, c.api)
		res := get(t, h, http.MethodGet, "/?api=https://evil.example", map[string]string{"Host": "gw.example:8080"})
		if b := body(t, res); !strings.Contains(b, `<meta name="orderpush-api" content="`+c.meta+`">`) {
			t.Errorf("api %q: page lacks meta %q", c.api, c.meta)
		}
		got := connectSrc(t, res.Header.Get("Content-Security-Policy"))
		if strings.Join(got, " ") != strings.Join(c.connect, " ") {
			t.Errorf("api %q: connect-src %v, want %v", c.api, got, c.connect)
		}
	}
	// A forged Host header cannot add sources or directives.
	h := handler(t, "")
	res := get(t, h, http.MethodGet, "/", map[string]string{"Host": "x; script-src *"})
	if csp := res.Header.Get("Content-Security-Policy"); strings.Contains(csp, "*") || strings.Count(csp, "script-src") != 1 {
		t.Errorf("forged host shaped the policy: %q", csp)
	}
	if got := connectSrc(t, res.Header.Get("Content-Security-Policy")); len(got) != 1 || got[0] != "'self'" {
		t.Errorf("connect-src with a bad Host: %v", got)
	}
}

func TestParseAPIURL(t *testing.T) {
	t.Parallel()
	good := map[string]string{
		"http://127.0.0.1:8090":          "http://127.0.0.1:8090",
		"https://api.shop.example":       "https://api.shop.example",
		"https://api.shop.example/":      "https://api.shop.example",
		"HTTPS://Shop.Example/api":       "https://shop.example/api",
		"http://[::1]:8090/orders/v1///": "http://[::1]:8090/orders/v1",
	}
	for in, want := range good {
		u, err := web.ParseAPIURL(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if u.String() != want {
			t.Errorf("%q -> %q, want %q", in, u.String(), want)
		}
	}
	for _, in := range []string{
		"", "/api", "api.shop.example", "ftp://shop.example", "javascript:alert(1)", "http://", "https:///x",
		"http://user:pw@shop.example", "http://shop.example/?x=1", "http://shop.example/#f", "http://shop.example?",
		"http://shop.example:99999999", "http://shop.example/a/../b", "http://shop example", "http://shop.example/'",
		"http://sh;op.example", "data:text/plain,x", "//shop.example",
	} {
		if u, err := web.ParseAPIURL(in); err == nil {
			t.Errorf("%q accepted as %q", in, u)
		}
	}
	if _, err := web.New(web.Options{APIURL: "http://user@x"}); err == nil || !strings.Contains(err.Error(), "DASHBOARD_API_URL") {
		t.Errorf("New with a bad URL: %v", err)
	}
}

func FuzzParseAPIURL(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:8090", "https://a.example/api/", "http://[::1]:1", "http://a b", "https://x/?q", "http://x:1/a/../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := web.ParseAPIURL(s)
		if err != nil {
			return
		}
		// Accepted: absolute http(s), a host, no query/fragment/user, and
		// a string that survives a second parse unchanged and has nothing
		// that could break out of a CSP source or an HTML attribute.
		out := u.String()
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("%q accepted as %q", s, out)
		}
		if strings.ContainsAny(out, " ;,'\"<>\\\t\r\n") {
			t.Fatalf("%q accepted as %q with a separator", s, out)
		}
		again, err := web.ParseAPIURL(out)
		if err != nil || again.String() != out {
			t.Fatalf("%q -> %q does not round-trip: %v %v", s, out, again, err)
		}
	})
}

func TestClientIsVersionedAndImportable(t *testing.T) {
	t.Parallel()
	h := handler(t, "")
	v := h.ClientVersion()
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
		t.Fatalf("VERSION %q", v)
	}
	cur := get(t, h, http.MethodGet, "/client.js?v="+v, map[string]string{"Origin": "https://shop.example"})
	if cc := cur.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") || !strings.Contains(cc, "max-age=31536000") {
		t.Errorf("client.js?v=%s Cache-Control %q, want a year, immutable", v, cc)
	}
	if got := cur.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("Access-Control-Allow-Origin %q: a cross-origin import needs *", got)
	}
	for _, p := range []string{"/client.js", "/client.js?v=0.0.1"} {
		if cc := get(t, h, http.MethodGet, p, nil).Header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("%s Cache-Control %q, want no-cache (another version must not be cached as this one)", p, cc)
		}
	}
	// The dashboard imports the version it is shipped with.
	app := body(t, get(t, h, http.MethodGet, "/app.js", nil))
	if !strings.Contains(app, "from './client.js?v="+v+"'") {
		t.Errorf("app.js does not import ./client.js?v=%s", v)
	}
}

// clientSHA256 pins client.js to its VERSION: browsers keep
// /client.js?v=VERSION for a year, so a change must come with a new
// VERSION (and gateway/README.md's example). Update both here after
// bumping it.
const (
	clientVersion = "1.0.0"
	clientSHA256  = "f9e9eae0a06afe95d1793d29d2f26fcfd89188355887ea7e047a2684d5c2a436"
)

func TestClientChangesBumpItsVersion(t *testing.T) {
	t.Parallel()
	b, err := fs.ReadFile(os.DirFS("static"), "client.js")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	got := hex.EncodeToString(sum[:])
	v := handler(t, "").ClientVersion()
	if v == clientVersion && got != clientSHA256 {
		t.Fatalf("client.js changed (sha256 %s) but VERSION is still %s: bump VERSION in client.js, app.js's import and the README, then set clientVersion and clientSHA256 here", got, v)
	}
	if v != clientVersion {
		t.Fatalf("VERSION %s: set clientVersion = %q and clientSHA256 = %q in this test", v, v, got)
	}
}

func TestRevalidatesWithETag(t *testing.T) {
	t.Parallel()
	h := handler(t, "")
	for _, p := range []string{"/app.js", "/"} {
		first := get(t, h, http.MethodGet, p, nil)
		tag := first.Header.Get("ETag")
		if tag == "" {
			t.Fatalf("%s: no ETag", p)
		}
		again := get(t, h, http.MethodGet, p, map[string]string{"If-None-Match": tag})
		if again.StatusCode != http.StatusNotModified {
			t.Fatalf("%s: status %d, want 304", p, again.StatusCode)
		}
	}
	if get(t, h, http.MethodGet, "/app.css", nil).Header.Get("ETag") == get(t, h, http.MethodGet, "/app.js", nil).Header.Get("ETag") {
		t.Fatal("app.css and app.js share an ETag")
	}
	// The page's ETag follows what it says about the API.
	if get(t, handler(t, "http://127.0.0.1:1"), http.MethodGet, "/", nil).Header.Get("ETag") == get(t, h, http.MethodGet, "/", nil).Header.Get("ETag") {
		t.Fatal("index.html has the same ETag for two API URLs")
	}
}

func TestRejectsOtherMethodsAndUnknownFiles(t *testing.T) {
	t.Parallel()
	h := handler(t, "")
	if res := get(t, h, http.MethodPost, "/", nil); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST / status %d, want 405", res.StatusCode)
	}
	if res := get(t, h, http.MethodGet, "/nope.js", nil); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope.js status %d, want 404", res.StatusCode)
	}
	if res := get(t, h, http.MethodGet, "/../web.go", nil); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /../web.go status %d, want 404", res.StatusCode)
	}
}
