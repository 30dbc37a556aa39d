package wire_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"orderpush/pkg/wire"
)

// TestHTTPStatus pins every code's status (PROTOCOL.md, "Errors" and
// "Limits and hostile clients"): clients and the order API's one mapping
// rely on it.
func TestHTTPStatus(t *testing.T) {
	t.Parallel()
	want := map[string]int{
		wire.CodeInvalidJSON:        http.StatusBadRequest,
		wire.CodeInvalidField:       http.StatusBadRequest,
		wire.CodeInvalidSince:       http.StatusBadRequest,
		wire.CodeInvalidFrame:       http.StatusBadRequest,
		wire.CodeUnauthorized:       http.StatusUnauthorized,
		wire.CodeForbidden:          http.StatusForbidden,
		wire.CodeOriginNotAllowed:   http.StatusForbidden,
		wire.CodeNotFound:           http.StatusNotFound,
		wire.CodeMethodNotAllowed:   http.StatusMethodNotAllowed,
		wire.CodePayloadTooLarge:    http.StatusRequestEntityTooLarge,
		wire.CodeRateLimited:        http.StatusTooManyRequests,
		wire.CodeTooManyConnections: http.StatusTooManyRequests,
		wire.CodeInternal:           http.StatusInternalServerError,
		wire.CodeUnavailable:        http.StatusServiceUnavailable,
		"no_such_code":              http.StatusInternalServerError,
	}
	for code, status := range want {
		if got := wire.HTTPStatus(code); got != status {
			t.Errorf("HTTPStatus(%q) = %d, want %d", code, got, status)
		}
	}
}

func TestErrorBody(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(wire.NewErrorBody(wire.CodeNotFound, "no <such> order"))
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); s != `{"error":{"code":"not_found","message":"no \u003csuch\u003e order"}}` {
		t.Fatalf("body %s", s)
	}
	var back wire.ErrorBody
	if err := json.Unmarshal(b, &back); err != nil || back.Error.Code != wire.CodeNotFound || back.Error.Message != "no <such> order" {
		t.Fatalf("round trip %+v, %v", back, err)
	}
}
