package httpapi_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"orderpush/orderapi/internal/apitest"
	"orderpush/orderapi/internal/httpapi"
	"orderpush/orderapi/internal/metrics"
	"orderpush/pkg/token"
)

// newBare is the HTTP layer with no order service behind it: a route that
// reaches the service panics on its nil pointer.
func newBare(t *testing.T, logs *bytes.Buffer) (http.Handler, *prometheus.Registry) {
	t.Helper()
	v, err := token.NewVerifier(token.Config{Secret: []byte(apitest.Secret)})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	return httpapi.New(httpapi.Config{
		Verifier: v, Metrics: metrics.New(reg), Gatherer: reg,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}), reg
}

// Every answer carries X-Request-Id: the caller's, or a fresh one.
func TestRequestID(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	h, _ := newBare(t, &logs)
	get := func(id string) string {
		req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
		if id != "" {
			req.Header.Set("X-Request-Id", id)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			t.Fatalf("healthz: %d %s", w.Code, w.Body)
		}
		return w.Header().Get("X-Request-Id")
	}
	if got := get("trace-42"); got != "trace-42" {
		t.Errorf("X-Request-Id %q; want the caller's trace-42", got)
	}
	// A caller's id that is not plain or too long is replaced, not echoed
	// into our answer and logs.
	for _, bad := range []string{"a b", "x\"y", "<script>", strings.Repeat("a", 129), "ü"} {
		if got := get(bad); got == bad || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(got) {
			t.Errorf("X-Request-Id %q answered with %q; want a fresh id", bad, got)
		}
	}
	if long := strings.Repeat("a", 128); get(long) != long {
		t.Errorf("a 128-character id was not kept")
	}
	a, b := get(""), get("")
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(a) || a == b {
		t.Errorf("fresh ids %q and %q; want two different 32-digit hex ids", a, b)
	}
	if !strings.Contains(logs.String(), "requestId="+a) {
		t.Errorf("request log lacks requestId=%s:\n%s", a, logs.String())
	}
}

// A panic in a route answers 500 internal with the request's id, is logged
// with its stack, and is counted under its route with the status sent.
func TestPanicAnswersInternal(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	h, reg := newBare(t, &logs)
	req := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{"merchantId":"m1","date":"2022-06-22","price":36}`))
	req.Header.Set("Authorization", "Bearer "+apitest.Token(t, token.RoleMember, "u1"))
	req.Header.Set("X-Request-Id", "boom-1")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), `"code":"internal"`) ||
		w.Header().Get("X-Request-Id") != "boom-1" {
		t.Fatalf("panic: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if l := logs.String(); !strings.Contains(l, `msg="panic in handler" route=/orders`) || !strings.Contains(l, "stack=") {
		t.Errorf("panic log:\n%s", l)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var count uint64
	for _, mf := range mfs {
		if mf.GetName() != "orderapi_http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == "/orders" && labels["method"] == "POST" && labels["code"] == "500" {
				count += m.GetHistogram().GetSampleCount()
			}
		}
	}
	if count != 1 {
		t.Errorf("%d requests counted as POST /orders 500; want 1", count)
	}
}
