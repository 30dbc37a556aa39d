package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"orderpush/orderapi/internal/apitest"
	"orderpush/orderapi/internal/httpapi"
	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
)

// The document served at /openapi.json is deploy/openapi.json, byte for
// byte. To change it, edit deploy/openapi.json and copy it over
// orderapi/internal/httpapi/openapi.json.
func TestOpenAPIMatchesDeployCopy(t *testing.T) {
	t.Parallel()
	deploy, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(deploy, httpapi.OpenAPIDoc) {
		t.Fatal("deploy/openapi.json and orderapi/internal/httpapi/openapi.json differ: " +
			"cp deploy/openapi.json orderapi/internal/httpapi/openapi.json")
	}
}

type openapiDoc struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
}

// Every route the server has is in the document, and every operation in
// the document is a route.
func TestOpenAPICoversRoutes(t *testing.T) {
	t.Parallel()
	var doc openapiDoc
	if err := json.Unmarshal(httpapi.OpenAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q; want 3.1.0", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			switch method {
			case "get", "post", "put", "patch", "delete", "head", "options":
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	e := httpapi.New(httpapi.Config{})
	var routes []string
	for _, r := range e.Routes() {
		if r.Method == echo.RouteNotFound {
			continue
		}
		segs := strings.Split(r.Path, "/")
		for i, s := range segs {
			if strings.HasPrefix(s, ":") {
				segs[i] = "{" + s[1:] + "}"
			}
		}
		routes = append(routes, r.Method+" "+strings.Join(segs, "/"))
	}
	slices.Sort(documented)
	slices.Sort(routes)
	for _, r := range routes {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is missing from openapi.json", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routes, d) {
			t.Errorf("openapi.json documents %s, which is no route", d)
		}
	}
}

func TestHealthMetricsAndDocs(t *testing.T) {
	env := apitest.Start(t, apitest.Options{})
	if r := env.Do(t, "GET", "/healthz", "", ""); r.Status != 200 {
		t.Fatalf("healthz: %d %s", r.Status, r.Body)
	}
	r := env.Do(t, "GET", "/readyz", "", "")
	if r.Status != 200 || string(bytes.TrimSpace(r.Body)) != `{"checks":{"database":"ok","redis":"ok"},"status":"ready"}` {
		t.Fatalf("readyz: %d %s", r.Status, r.Body)
	}
	if r := env.Do(t, "GET", "/openapi.json", "", ""); r.Status != 200 || !bytes.Equal(r.Body, httpapi.OpenAPIDoc) {
		t.Fatalf("openapi.json: %d", r.Status)
	}
	m := redistest.Unique("m")
	place(t, env, apitest.Token(t, token.RoleMember, "u1"), m, "1")
	r = env.Do(t, "GET", "/metrics", "", "")
	for _, want := range []string{
		"orderapi_orders_created_total 1",
		`orderapi_http_request_duration_seconds_count{code="201",method="POST",route="/orders"} 1`,
		`orderapi_http_request_duration_seconds_count{code="200",method="GET",route="/readyz"} 1`,
		"orderapi_publish_errors_total",
		"orderapi_relay_published_total",
		"orderapi_orders_processed_total",
	} {
		if !strings.Contains(string(r.Body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Unknown routes and methods use the same error shape and a bounded label.
	if r := env.Do(t, "GET", "/nope/"+m, "", ""); r.Status != 404 || r.ErrorCode() != "not_found" {
		t.Errorf("unknown route: %d %s", r.Status, r.Body)
	}
	if r := env.Do(t, "DELETE", "/orders", "", ""); r.Status != 405 || r.ErrorCode() != "method_not_allowed" {
		t.Errorf("wrong method: %d %s", r.Status, r.Body)
	}
	r = env.Do(t, "GET", "/metrics", "", "")
	if strings.Contains(string(r.Body), m) || !strings.Contains(string(r.Body), `route="other"`) {
		t.Errorf("metrics labels are not bounded to route templates")
	}
}

// Browsers on another origin may call the API with a bearer token.
func TestCORSPreflight(t *testing.T) {
	env := apitest.Start(t, apitest.Options{})
	req, _ := http.NewRequest(http.MethodOptions, env.URL+"/orders", nil)
	req.Header.Set("Origin", "https://dashboard.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "authorization") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
}

// A body without Content-Length (chunked) is cut off at 64 KiB too.
func TestChunkedBodyTooLarge(t *testing.T) {
	env := apitest.Start(t, apitest.Options{})
	body := io.MultiReader(strings.NewReader(`{"merchantId":"m1","date":"2022-06-22","price":36,"x":"`),
		strings.NewReader(strings.Repeat("y", 65<<10)), strings.NewReader(`"}`))
	req, _ := http.NewRequest(http.MethodPost, env.URL+"/orders", body)
	req.Header.Set("Authorization", "Bearer "+apitest.Token(t, token.RoleMember, "u1"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if req.ContentLength != 0 || resp.StatusCode != 413 || !strings.Contains(string(b), `"payload_too_large"`) {
		t.Fatalf("chunked oversize: %d %s", resp.StatusCode, b)
	}
	if n := env.Count(t, "orders"); n != 0 {
		t.Fatalf("%d orders stored", n)
	}
}
