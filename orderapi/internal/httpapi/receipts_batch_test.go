package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"orderpush/orderapi/internal/apitest"
	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// A gateway's batch on both databases: acks and seen apply as the single
// endpoints do (deliveredAt, seenAt, one order.seen per first seen, the
// histograms), an ack above the seq and a seen of no order or of another
// merchant's order are skipped and counted, only services may send, and
// every malformed item is refused naming it, with nothing applied.
func TestReceiptBatch(t *testing.T) {
	apitest.Each(t, func(t *testing.T, dialect string) {
		env := apitest.Start(t, apitest.Options{Dialect: dialect})
		m, other := redistest.Unique("m"), redistest.Unique("m")
		member := apitest.Token(t, token.RoleMember, "u1")
		merchant := apitest.Token(t, token.RoleMerchant, m)
		service := apitest.Token(t, token.RoleService, "gateway")
		var nos []string // seq 1, 2, 3
		for range 3 {
			nos = append(nos, place(t, env, member, m, "1").OrderNo)
		}
		otherNo := place(t, env, member, other, "1").OrderNo
		batch := func(tok, body string) apitest.Response {
			t.Helper()
			return env.Do(t, http.MethodPost, "/receipts", tok, body)
		}

		many := `{"acks":[` + strings.Repeat(`{"merchantId":"`+m+`","seq":1},`, wire.MaxReceiptItems) + `{"merchantId":"` + m + `","seq":1}]}`
		for _, tc := range []struct {
			name, tok, body string
			status          int
			code, msg       string
		}{
			{"member", member, `{}`, 403, "forbidden", ""},
			{"merchant", merchant, `{"acks":[{"merchantId":"` + m + `","seq":1}]}`, 403, "forbidden", ""},
			{"no body", service, ``, 400, "invalid_json", ""},
			{"not an object", service, `[]`, 400, "invalid_json", ""},
			{"unknown field", service, `{"acks":[],"x":1}`, 400, "invalid_field", "unknown field"},
			{"acks not an array", service, `{"acks":{}}`, 400, "invalid_field", "acks: must be a JSON array"},
			{"item not an object", service, `{"seen":[1]}`, 400, "invalid_json", "seen[0]: "},
			{"unknown item field", service, `{"acks":[{"merchantId":"` + m + `","seq":1,"x":1}]}`, 400, "invalid_field", `acks[0].\"x\": unknown field`},
			{"bad seq", service, `{"acks":[{"merchantId":"` + m + `","seq":1},{"merchantId":"` + m + `","seq":-1}]}`, 400, "invalid_field", "acks[1].seq"},
			{"missing seq", service, `{"acks":[{"merchantId":"` + m + `"}]}`, 400, "invalid_field", "acks[0].seq: required"},
			{"bad merchant", service, `{"acks":[{"merchantId":"bad.id","seq":1}]}`, 400, "invalid_field", "acks[0].merchantId"},
			{"bad order number", service, `{"seen":[{"merchantId":"` + m + `","orderNo":"x"}]}`, 400, "invalid_field", "seen[0].orderNo: malformed"},
			{"missing order number", service, `{"seen":[{"merchantId":"` + m + `"}]}`, 400, "invalid_field", "seen[0].orderNo: required"},
			{"too many items", service, many, 400, "invalid_field", fmt.Sprintf("at most %d items", wire.MaxReceiptItems)},
		} {
			r := batch(tc.tok, tc.body)
			if r.Status != tc.status || r.ErrorCode() != tc.code || !strings.Contains(string(r.Body), tc.msg) {
				t.Errorf("batch %s: %d %s; want %d %s %q", tc.name, r.Status, r.Body, tc.status, tc.code, tc.msg)
			}
		}
		if n := env.Count(t, "orders WHERE delivered_ms IS NOT NULL OR seen_ms IS NOT NULL"); n != 0 {
			t.Fatalf("refused batches wrote receipts on %d orders", n)
		}

		body := `{"acks":[{"merchantId":"` + m + `","seq":2},{"merchantId":"` + other + `","seq":5}],
			"seen":[{"merchantId":"` + m + `","orderNo":"` + nos[2] + `"},{"merchantId":"` + m + `","orderNo":"` + otherNo + `"},
			{"merchantId":"` + m + `","orderNo":"` + nos[2] + `"},{"merchantId":"` + m + `","orderNo":"u100000000000000000001"}]}`
		r := batch(service, body)
		var res wire.ReceiptResult
		r.Decode(t, &res)
		want := wire.ReceiptResult{Acks: wire.ReceiptCounts{Applied: 1, Skipped: 1}, Seen: wire.ReceiptCounts{Applied: 2, Skipped: 2}}
		if r.Status != http.StatusOK || res != want {
			t.Fatalf("batch: %d %s; want %+v", r.Status, r.Body, want)
		}
		var got [3]receiptJSON
		for i, no := range nos {
			env.Do(t, http.MethodGet, "/orders/"+no, merchant, "").Decode(t, &got[i])
		}
		if got[0].DeliveredAt == nil || got[1].DeliveredAt == nil || got[2].DeliveredAt != nil ||
			got[0].SeenAt != nil || got[1].SeenAt != nil || got[2].SeenAt == nil {
			t.Fatalf("after the batch: %+v", got)
		}
		if n := env.Count(t, "orders WHERE delivered_ms IS NOT NULL OR seen_ms IS NOT NULL"); n != 3 {
			t.Fatalf("%d orders have receipts, want 3 (not another merchant's)", n)
		}
		frames := events(t, env, m, merchant)
		if len(frames) != 4 || frames[3].Event != "order.seen" || frames[3].Seq != 4 ||
			frames[3].Data.Order.OrderNo != nos[2] || *frames[3].Data.Order.SeenAt != *got[2].SeenAt {
			t.Fatalf("event log after the batch: %+v", frames)
		}
		if frames := events(t, env, other, apitest.Token(t, token.RoleMerchant, other)); len(frames) != 1 {
			t.Fatalf("another merchant's log after the batch: %+v", frames)
		}

		// The same batch again: everything is already recorded.
		r = batch(service, body)
		r.Decode(t, &res)
		if r.Status != http.StatusOK || res != want {
			t.Fatalf("batch again: %d %s; want %+v", r.Status, r.Body, want)
		}
		if frames := events(t, env, m, merchant); len(frames) != 4 {
			t.Fatalf("a repeated seen wrote events: %+v", frames)
		}
		if r := batch(service, `{}`); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"applied":0`) {
			t.Fatalf("empty batch: %d %s", r.Status, r.Body)
		}
		if got := env.Metric(t, "orderapi_order_delivered_seconds"); got != 2 {
			t.Errorf("orderapi_order_delivered_seconds count %v, want 2", got)
		}
		if got := env.Metric(t, "orderapi_order_seen_seconds"); got != 1 {
			t.Errorf("orderapi_order_seen_seconds count %v, want 1", got)
		}
		var raw map[string]json.RawMessage
		batch(service, `{}`).Decode(t, &raw)
		if len(raw) != 2 {
			t.Errorf("answer fields: %v", raw)
		}
	})
}
