package order_test

import (
	"encoding/json"
	"testing"

	"orderpush/orderapi/internal/order"
	"orderpush/pkg/wire"
)

// FuzzParseReceipts: a batch body is either refused with a client error or
// valid JSON whose every item is well-formed, within the bound, and which
// reads back as what was parsed.
func FuzzParseReceipts(f *testing.F) {
	for _, s := range []string{
		`{"acks":[{"merchantId":"m1","seq":12}],"seen":[{"merchantId":"m1","orderNo":"u100000000000000000001"}]}`,
		`{}`, `{"acks":[]}`, `{"seen":null}`, `{"acks":[{"merchantId":"m1","seq":01}]}`,
		`{"acks":[{"merchantId":"m1","seq":1,"seq":2}]}`, `{"seen":[{"merchantId":"m.1","orderNo":"x"}]}`,
		`{"acks":[1]}`, `[]`, `null`, ``, `{`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := order.ParseReceipts(body)
		if err != nil {
			e, ok := order.AsError(err)
			if !ok || (e.Code != wire.CodeInvalidJSON && e.Code != wire.CodeInvalidField) || e.Message == "" {
				t.Fatalf("ParseReceipts(%q) error %v is not a client error", body, err)
			}
			return
		}
		if !json.Valid(body) || len(b.Acks)+len(b.Seen) > wire.MaxReceiptItems {
			t.Fatalf("ParseReceipts(%q) accepted %+v", body, b)
		}
		for _, a := range b.Acks {
			if !wire.ValidMerchantID(a.MerchantID) || a.Seq > wire.MaxAckSeq {
				t.Fatalf("ParseReceipts(%q) accepted ack %+v", body, a)
			}
		}
		for _, s := range b.Seen {
			if !wire.ValidMerchantID(s.MerchantID) || !wire.ValidOrderNo(s.OrderNo) {
				t.Fatalf("ParseReceipts(%q) accepted seen %+v", body, s)
			}
		}
		again, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if b2, err := order.ParseReceipts(again); err != nil || len(b2.Acks) != len(b.Acks) || len(b2.Seen) != len(b.Seen) {
			t.Fatalf("ParseReceipts(%s) of its own output: %+v, %v", again, b2, err)
		}
	})
}
