package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"orderpush/orderapi/internal/apitest"
	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
)

// Every kind of bad input to POST /orders gets its 4xx and the error body,
// names the field where there is one, and stores nothing (issue 3).
func TestCreateRejectsBadInput(t *testing.T) {
	apitest.Each(t, func(t *testing.T, dialect string) {
		env := apitest.Start(t, apitest.Options{Dialect: dialect})
		m := redistest.Unique("m")
		member := apitest.Token(t, token.RoleMember, "u1001")
		service := apitest.Token(t, token.RoleService, "billing")
		merchant := apitest.Token(t, token.RoleMerchant, m)
		ok := `"merchantId":"` + m + `","date":"2022-06-22"`
		big := `{` + ok + `,"price":36,"pad":"` + strings.Repeat("x", 70<<10) + `"}`
		for _, tc := range []struct {
			name, tok, body string
			status          int
			code, field     string
		}{
			{"empty body", member, "", 400, "invalid_json", ""},
			{"blank body", member, " \n\t", 400, "invalid_json", ""},
			{"not json", member, "merchantId=m1", 400, "invalid_json", ""},
			{"truncated", member, `{"merchantId":"m1"`, 400, "invalid_json", ""},
			{"trailing object", member, `{` + ok + `,"price":36} {}`, 400, "invalid_json", ""},
			{"trailing garbage", member, `{` + ok + `,"price":36}x`, 400, "invalid_json", ""},
			{"array", member, `[{` + ok + `,"price":36}]`, 400, "invalid_json", ""},
			{"string", member, `"order"`, 400, "invalid_json", ""},
			{"null", member, `null`, 400, "invalid_json", ""},
			{"unknown field", member, `{` + ok + `,"price":36,"discount":5}`, 400, "invalid_field", "discount"},
			{"repeated field", member, `{` + ok + `,"price":36,"price":37}`, 400, "invalid_field", "price"},
			{"missing merchantId", member, `{"date":"2022-06-22","price":36}`, 400, "invalid_field", "merchantId"},
			{"missing date", member, `{"merchantId":"` + m + `","price":36}`, 400, "invalid_field", "date"},
			{"missing price", member, `{` + ok + `}`, 400, "invalid_field", "price"},
			{"merchantId number", member, `{"merchantId":1,"date":"2022-06-22","price":36}`, 400, "invalid_field", "merchantId"},
			{"merchantId null", member, `{"merchantId":null,"date":"2022-06-22","price":36}`, 400, "invalid_field", "merchantId"},
			{"merchantId empty", member, `{"merchantId":"","date":"2022-06-22","price":36}`, 400, "invalid_field", "merchantId"},
			{"merchantId bad chars", member, `{"merchantId":"m 1/x","date":"2022-06-22","price":36}`, 400, "invalid_field", "merchantId"},
			{"merchantId too long", member, `{"merchantId":"` + strings.Repeat("m", 65) + `","date":"2022-06-22","price":36}`, 400, "invalid_field", "merchantId"},
			{"date number", member, `{"merchantId":"` + m + `","date":20220622,"price":36}`, 400, "invalid_field", "date"},
			{"date slashes", member, `{"merchantId":"` + m + `","date":"2022/06/22","price":36}`, 400, "invalid_field", "date"},
			{"date Feb 30", member, `{"merchantId":"` + m + `","date":"2022-02-30","price":36}`, 400, "invalid_field", "date"},
			{"date Feb 29 non-leap", member, `{"merchantId":"` + m + `","date":"2023-02-29","price":36}`, 400, "invalid_field", "date"},
			{"date month 13", member, `{"merchantId":"` + m + `","date":"2022-13-01","price":36}`, 400, "invalid_field", "date"},
			{"date short", member, `{"merchantId":"` + m + `","date":"2022-6-2","price":36}`, 400, "invalid_field", "date"},
			{"date with time", member, `{"merchantId":"` + m + `","date":"2022-06-22T00:00:00Z","price":36}`, 400, "invalid_field", "date"},
			{"price string", member, `{` + ok + `,"price":"36"}`, 400, "invalid_field", "price"},
			{"price null", member, `{` + ok + `,"price":null}`, 400, "invalid_field", "price"},
			{"price bool", member, `{` + ok + `,"price":true}`, 400, "invalid_field", "price"},
			{"price negative", member, `{` + ok + `,"price":-1}`, 400, "invalid_field", "price"},
			{"price negative cents", member, `{` + ok + `,"price":-0.01}`, 400, "invalid_field", "price"},
			{"price 3 decimals", member, `{` + ok + `,"price":1.234}`, 400, "invalid_field", "price"},
			{"price exponent decimals", member, `{` + ok + `,"price":1e-3}`, 400, "invalid_field", "price"},
			{"price too large", member, `{` + ok + `,"price":1e14}`, 400, "invalid_field", "price"},
			{"member sets userId", member, `{` + ok + `,"price":36,"userId":"u2"}`, 400, "invalid_field", "userId"},
			{"service without userId", service, `{` + ok + `,"price":36}`, 400, "invalid_field", "userId"},
			{"service bad userId", service, `{` + ok + `,"price":36,"userId":"u 2"}`, 400, "invalid_field", "userId"},
			{"service userId number", service, `{` + ok + `,"price":36,"userId":7}`, 400, "invalid_field", "userId"},
			{"oversized body", member, big, 413, "payload_too_large", ""},
			{"merchant token", merchant, `{` + ok + `,"price":36}`, 403, "forbidden", ""},
			{"no token", "", `{` + ok + `,"price":36}`, 401, "unauthorized", ""},
			{"garbage token", "not.a.jwt", `{` + ok + `,"price":36}`, 401, "unauthorized", ""},
		} {
			resp := env.Do(t, http.MethodPost, "/orders", tc.tok, tc.body)
			if resp.Status != tc.status || resp.ErrorCode() != tc.code {
				t.Errorf("%s: %d %s; want %d %s", tc.name, resp.Status, resp.Body, tc.status, tc.code)
				continue
			}
			var body struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			resp.Decode(t, &body)
			if body.Error.Message == "" || !strings.Contains(body.Error.Message, tc.field) {
				t.Errorf("%s: message %q does not name %q", tc.name, body.Error.Message, tc.field)
			}
		}
		for _, table := range []string{"orders", "events", "merchants"} {
			if n := env.Count(t, table); n != 0 {
				t.Errorf("%d rows in %s after rejected requests; want 0", n, table)
			}
		}
	})
}

// Bad paging and path parameters get invalid_field naming the parameter.
func TestReadRejectsBadParameters(t *testing.T) {
	apitest.Each(t, func(t *testing.T, dialect string) {
		env := apitest.Start(t, apitest.Options{Dialect: dialect})
		m := redistest.Unique("m")
		service := apitest.Token(t, token.RoleService, "ops")
		for _, tc := range []struct{ path, field string }{
			{"/merchants/" + m + "/orders?limit=0", "limit"},
			{"/merchants/" + m + "/orders?limit=201", "limit"},
			{"/merchants/" + m + "/orders?limit=-1", "limit"},
			{"/merchants/" + m + "/orders?limit=ten", "limit"},
			{"/merchants/" + m + "/orders?limit=1.5", "limit"},
			{"/merchants/" + m + "/orders?status=done", "status"},
			{"/merchants/" + m + "/orders?before=nope", "before"},
			{"/merchants/" + m + "/orders?before=u100012345678901230000", "before"},
			{"/merchants/bad%20id/orders", "id"},
			{"/merchants/" + m + "/events?after=-1", "after"},
			{"/merchants/" + m + "/events?after=x", "after"},
			{"/merchants/" + m + "/events?limit=0", "limit"},
			{"/merchants/" + m + "/events?limit=1001", "limit"},
			{"/merchants/" + strings.Repeat("x", 65) + "/summary", "id"},
			{"/orders/not-an-order", "orderNo"},
		} {
			resp := env.Do(t, http.MethodGet, tc.path, service, "")
			if resp.Status != 400 || resp.ErrorCode() != "invalid_field" || !strings.Contains(string(resp.Body), tc.field) {
				t.Errorf("GET %s: %d %s; want 400 invalid_field naming %s", tc.path, resp.Status, resp.Body, tc.field)
			}
		}
		resp := env.Do(t, http.MethodPost, "/orders/not-an-order/process", service, "")
		if resp.Status != 400 || resp.ErrorCode() != "invalid_field" {
			t.Errorf("process malformed: %d %s; want 400 invalid_field", resp.Status, resp.Body)
		}
	})
}
