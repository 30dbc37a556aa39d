package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"orderpush/gateway/web"
)

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestServesDashboard(t *testing.T) {
	t.Parallel()
	h := web.Handler()
	cases := []struct {
		path, contentType, contains string
	}{
		{"/", "text/html", `<div id="count"`},
		{"/?token=abc", "text/html", `src="app.js"`},
		{"/app.js", "javascript", "您收到一条新订单，赶快去处理吧"},
		{"/app.css", "text/css", ".count"},
		{"/favicon.svg", "image/svg+xml", "<svg"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			t.Parallel()
			res := get(t, h, http.MethodGet, c.path, nil)
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d", res.StatusCode)
			}
			if ct := res.Header.Get("Content-Type"); !strings.Contains(ct, c.contentType) {
				t.Errorf("Content-Type %q, want %q", ct, c.contentType)
			}
			if !strings.Contains(string(body), c.contains) {
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

func TestRevalidatesWithETag(t *testing.T) {
	t.Parallel()
	h := web.Handler()
	first := get(t, h, http.MethodGet, "/app.js", nil)
	tag := first.Header.Get("ETag")
	if tag == "" {
		t.Fatal("no ETag")
	}
	again := get(t, h, http.MethodGet, "/app.js", map[string]string{"If-None-Match": tag})
	if again.StatusCode != http.StatusNotModified {
		t.Fatalf("status %d, want 304", again.StatusCode)
	}
	if other := get(t, h, http.MethodGet, "/app.css", nil).Header.Get("ETag"); other == tag {
		t.Fatalf("app.css and app.js share ETag %s", tag)
	}
}

func TestRejectsOtherMethodsAndUnknownFiles(t *testing.T) {
	t.Parallel()
	h := web.Handler()
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
