package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"orderpush/pkg/wire"
)

// TestHTTPErrorCodes checks the code of every error Echo raises by itself:
// each is one of the contract's (pkg/wire), with Echo's status kept.
func TestHTTPErrorCodes(t *testing.T) {
	t.Parallel()
	s := &Server{}
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{echo.NewHTTPError(http.StatusBadRequest, "bad parameter"), 400, wire.CodeInvalidField},
		{echo.NewHTTPError(http.StatusUnauthorized), 401, wire.CodeUnauthorized},
		{echo.NewHTTPError(http.StatusForbidden), 403, wire.CodeForbidden},
		{echo.ErrNotFound, 404, wire.CodeNotFound},
		{echo.ErrMethodNotAllowed, 405, wire.CodeMethodNotAllowed},
		{errors.New("boom"), 500, wire.CodeInternal},
	}
	for _, tc := range cases {
		rec := httptest.NewRecorder()
		c := echo.New().NewContext(httptest.NewRequest(http.MethodGet, "/x", nil), rec)
		s.httpError(tc.err, c)
		var body wire.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%v: body %q: %v", tc.err, rec.Body, err)
		}
		if rec.Code != tc.status || body.Error.Code != tc.code || body.Error.Message == "" {
			t.Errorf("%v: %d %+v, want %d %s", tc.err, rec.Code, body.Error, tc.status, tc.code)
		}
	}
}
