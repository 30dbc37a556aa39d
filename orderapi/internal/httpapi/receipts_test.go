package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"orderpush/orderapi/internal/apitest"
	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
)

type receiptJSON struct {
	OrderNo     string  `json:"orderNo"`
	Status      string  `json:"status"`
	DeliveredAt *string `json:"deliveredAt"`
	SeenAt      *string `json:"seenAt"`
}

type summaryJSON struct {
	OrderSum    int64  `json:"orderSum"`
	Seq         uint64 `json:"seq"`
	Undelivered int64  `json:"undelivered"`
	Unseen      int64  `json:"unseen"`
}

// Receipts on both databases: deliveredAt only after an ack at or above
// the order's seq (cumulative, idempotent, strict), the first seen emits
// exactly one order.seen and later ones nothing, processing sets seenAt,
// and the summary counts what is left.
func TestReceipts(t *testing.T) {
	apitest.Each(t, func(t *testing.T, dialect string) {
		env := apitest.Start(t, apitest.Options{Dialect: dialect})
		m, other := redistest.Unique("m"), redistest.Unique("m")
		member := apitest.Token(t, token.RoleMember, "u1")
		merchant := apitest.Token(t, token.RoleMerchant, m)
		service := apitest.Token(t, token.RoleService, "gateway")
		get := func(no string) receiptJSON {
			t.Helper()
			r := env.Do(t, http.MethodGet, "/orders/"+no, merchant, "")
			if r.Status != 200 {
				t.Fatalf("GET %s: %d %s", no, r.Status, r.Body)
			}
			if !bytes.Contains(r.Body, []byte(`"deliveredAt":`)) || !bytes.Contains(r.Body, []byte(`"seenAt":`)) {
				t.Fatalf("GET %s lacks the receipt fields: %s", no, r.Body)
			}
			var o receiptJSON
			r.Decode(t, &o)
			return o
		}
		summary := func() summaryJSON {
			t.Helper()
			var s summaryJSON
			r := env.Do(t, http.MethodGet, "/merchants/"+m+"/summary", merchant, "")
			if r.Status != 200 || !bytes.Contains(r.Body, []byte(`"undelivered":`)) {
				t.Fatalf("summary: %d %s", r.Status, r.Body)
			}
			r.Decode(t, &s)
			return s
		}
		ack := func(tok, merchantID, body string) apitest.Response {
			t.Helper()
			return env.Do(t, http.MethodPost, "/merchants/"+merchantID+"/ack", tok, body)
		}
		var nos []string // seq 1, 2, 3
		for range 3 {
			o := place(t, env, member, m, "1")
			nos = append(nos, o.OrderNo)
		}
		place(t, env, member, other, "1") // another merchant's seq 1
		for _, no := range nos {
			if o := get(no); o.DeliveredAt != nil || o.SeenAt != nil {
				t.Fatalf("new order has receipts: %+v", o)
			}
		}
		if s := summary(); s.Undelivered != 3 || s.Unseen != 3 || s.OrderSum != 3 {
			t.Fatalf("summary before receipts: %+v", s)
		}

		// Refusals first: none of them may deliver anything.
		for _, tc := range []struct {
			name, tok, merchant, body string
			status                    int
			code                      string
		}{
			{"member", member, m, `{"seq":1}`, 403, "forbidden"},
			{"another merchant", apitest.Token(t, token.RoleMerchant, other), m, `{"seq":1}`, 403, "forbidden"},
			{"above the current seq", merchant, m, `{"seq":4}`, 400, "invalid_field"},
			{"negative", merchant, m, `{"seq":-1}`, 400, "invalid_field"},
			{"a string", merchant, m, `{"seq":"1"}`, 400, "invalid_field"},
			{"a fraction", merchant, m, `{"seq":1.5}`, 400, "invalid_field"},
			{"an exponent", merchant, m, `{"seq":1e0}`, 400, "invalid_field"},
			{"too big", merchant, m, `{"seq":18446744073709551616}`, 400, "invalid_field"},
			{"missing", merchant, m, `{}`, 400, "invalid_field"},
			{"unknown field", merchant, m, `{"seq":1,"x":1}`, 400, "invalid_field"},
			{"no body", merchant, m, ``, 400, "invalid_json"},
			{"bad merchant id", service, "bad.id", `{"seq":1}`, 400, "invalid_field"},
		} {
			if r := ack(tc.tok, tc.merchant, tc.body); r.Status != tc.status || r.ErrorCode() != tc.code {
				t.Errorf("ack %s: %d %s; want %d %s", tc.name, r.Status, r.Body, tc.status, tc.code)
			}
		}
		if n := env.Count(t, "orders WHERE delivered_ms IS NOT NULL"); n != 0 {
			t.Fatalf("refused acks delivered %d orders", n)
		}

		// An ack of seq 2 delivers the orders of seq 1 and 2, not 3, and
		// not another merchant's seq 1.
		if r := ack(merchant, m, `{"seq":2}`); r.Status != http.StatusNoContent || len(r.Body) != 0 {
			t.Fatalf("ack 2: %d %s", r.Status, r.Body)
		}
		first, second := get(nos[0]), get(nos[1])
		if first.DeliveredAt == nil || second.DeliveredAt == nil || get(nos[2]).DeliveredAt != nil {
			t.Fatalf("after ack 2: %+v %+v %+v", first, second, get(nos[2]))
		}
		if !createdAtRe.MatchString(*first.DeliveredAt) {
			t.Fatalf("deliveredAt %q is not RFC 3339 UTC with ms", *first.DeliveredAt)
		}
		if n := env.Count(t, "orders WHERE delivered_ms IS NOT NULL"); n != 2 {
			t.Fatalf("%d orders delivered, want 2 (another merchant's must not be)", n)
		}
		// Cumulative and idempotent: a lower or repeated ack changes nothing.
		for _, body := range []string{`{"seq":1}`, `{"seq":2}`, `{"seq":0}`} {
			if r := ack(service, m, body); r.Status != http.StatusNoContent {
				t.Fatalf("ack %s: %d %s", body, r.Status, r.Body)
			}
		}
		if again := get(nos[0]); *again.DeliveredAt != *first.DeliveredAt {
			t.Fatalf("a lower ack moved deliveredAt: %s -> %s", *first.DeliveredAt, *again.DeliveredAt)
		}
		if s := summary(); s.Undelivered != 1 || s.Unseen != 3 {
			t.Fatalf("summary after ack 2: %+v", s)
		}

		// The first seen emits one order.seen; later ones emit nothing.
		seen := env.Do(t, http.MethodPost, "/orders/"+nos[2]+"/seen", merchant, "")
		var so receiptJSON
		seen.Decode(t, &so)
		if seen.Status != 200 || so.SeenAt == nil || !createdAtRe.MatchString(*so.SeenAt) || so.OrderNo != nos[2] {
			t.Fatalf("seen: %d %s", seen.Status, seen.Body)
		}
		for _, tok := range []string{merchant, service} {
			r := env.Do(t, http.MethodPost, "/orders/"+nos[2]+"/seen", tok, "")
			if r.Status != 200 || !bytes.Equal(r.Body, seen.Body) {
				t.Fatalf("second seen: %d %s; want %s", r.Status, r.Body, seen.Body)
			}
		}
		if s := summary(); s.Seq != 4 || s.Unseen != 2 || s.OrderSum != 3 {
			t.Fatalf("summary after seen: %+v (want seq 4: one order.seen)", s)
		}
		frames := events(t, env, m, merchant)
		if len(frames) != 4 || frames[3].Event != "order.seen" || frames[3].Seq != 4 ||
			frames[3].Data.OrderSum != 3 || frames[3].Data.Order.SeenAt == nil || *frames[3].Data.Order.SeenAt != *so.SeenAt {
			t.Fatalf("event log after seen: %+v", frames)
		}
		if frames[0].Data.Order.DeliveredAt != nil || !strings.Contains(frames[0].raw, `"deliveredAt":null,"seenAt":null`) {
			t.Fatalf("order frame without null receipts: %s", frames[0].raw)
		}
		if r := env.Do(t, http.MethodPost, "/orders/"+nos[2]+"/seen", member, ""); r.Status != 403 {
			t.Fatalf("member seen: %d %s", r.Status, r.Body)
		}

		// Processing sets seenAt when unset, and emits order.processed only.
		p := env.Do(t, http.MethodPost, "/orders/"+nos[0]+"/process", merchant, "")
		var po receiptJSON
		p.Decode(t, &po)
		if p.Status != 200 || po.SeenAt == nil || po.Status != "processed" {
			t.Fatalf("process: %d %s", p.Status, p.Body)
		}
		frames = events(t, env, m, merchant)
		if len(frames) != 5 || frames[4].Event != "order.processed" || frames[4].Data.Order.SeenAt == nil {
			t.Fatalf("event log after process: %+v", frames)
		}
		// Pending: orders 2 (delivered, unseen) and 3 (seen, undelivered).
		if s := summary(); s.OrderSum != 2 || s.Undelivered != 1 || s.Unseen != 1 {
			t.Fatalf("summary after process: %+v", s)
		}
		if got := env.Metric(t, "orderapi_order_delivered_seconds"); got != 2 {
			t.Errorf("orderapi_order_delivered_seconds count %v, want 2", got)
		}
		if got := env.Metric(t, "orderapi_order_seen_seconds"); got != 2 {
			t.Errorf("orderapi_order_seen_seconds count %v, want 2 (seen + processing)", got)
		}
	})
}

type frameJSON struct {
	Event string `json:"event"`
	Seq   uint64 `json:"seq"`
	Data  struct {
		OrderSum int64       `json:"orderSum"`
		Order    receiptJSON `json:"order"`
	} `json:"data"`
	raw string
}

func events(t *testing.T, env *apitest.Env, m, tok string) []frameJSON {
	t.Helper()
	r := env.Do(t, http.MethodGet, "/merchants/"+m+"/events", tok, "")
	var body struct {
		Events []json.RawMessage `json:"events"`
	}
	r.Decode(t, &body)
	out := make([]frameJSON, len(body.Events))
	for i, raw := range body.Events {
		if err := json.Unmarshal(raw, &out[i]); err != nil {
			t.Fatal(err)
		}
		out[i].raw = string(raw)
	}
	return out
}
