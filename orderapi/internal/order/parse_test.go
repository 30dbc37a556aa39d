package order_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"orderpush/orderapi/internal/order"
	"orderpush/pkg/wire"
)

func TestParseCreate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body  string
		want  order.CreateRequest
		code  string
		field string
	}{
		{body: `{"merchantId":"m1","date":"2022-06-22","price":36}`,
			want: order.CreateRequest{MerchantID: "m1", Date: "2022-06-22", Price: 3600}},
		{body: " {\"price\":36.5 ,\"date\":\"2024-02-29\",\n\"merchantId\":\"M_1-x\",\"userId\":\"u9\"}\n",
			want: order.CreateRequest{MerchantID: "M_1-x", Date: "2024-02-29", Price: 3650, UserID: "u9", HasUserID: true}},
		{body: `{"merchantId":"m1","date":"2022-06-22","price":0.01}`, want: order.CreateRequest{MerchantID: "m1", Date: "2022-06-22", Price: 1}},
		{body: `{"merchantId":"m1","date":"2022-06-22","price":1.230}`, want: order.CreateRequest{MerchantID: "m1", Date: "2022-06-22", Price: 123}},
		{body: ``, code: "invalid_json"},
		{body: `{`, code: "invalid_json"},
		{body: `{"merchantId":"m1",}`, code: "invalid_json"},
		{body: `{"merchantId":"m1"}]`, code: "invalid_json"},
		{body: `{"x":1} garbage`, code: "invalid_json"}, // syntax before fields
		{body: `{"x":1}`, code: "invalid_field", field: `"x"`},
		{body: `{"merchantId":"m1","merchantId":"m2","date":"2022-06-22","price":1}`, code: "invalid_field", field: "merchantId"},
		{body: `{"merchantId":"m1","date":"2022-06-22","price":"1"}`, code: "invalid_field", field: "price"},
		{body: `{"merchantId":"m1","date":"2022-06-22","price":1e400}`, code: "invalid_field", field: "price"},
		{body: `{"merchantId":"m1","date":"2022-06-22","price":01}`, code: "invalid_json"},
		{body: `{"merchantId":"m1","date":"0000-00-00","price":1}`, code: "invalid_field", field: "date"},
		{body: `{"merchantId":"m1","date":"2022-06-22","price":1,"userId":""}`, code: "invalid_field", field: "userId"},
		{body: `{"merchantId":"m1","date":"2022-06-22","price":1,"userId":"` + strings.Repeat("u", 33) + `"}`, code: "invalid_field", field: "userId"},
	} {
		got, err := order.ParseCreate([]byte(tc.body))
		if tc.code == "" {
			if err != nil || got != tc.want {
				t.Errorf("ParseCreate(%s) = %+v, %v; want %+v", tc.body, got, err, tc.want)
			}
			continue
		}
		e, ok := order.AsError(err)
		if !ok || e.Code != tc.code || !strings.Contains(e.Message, tc.field) {
			t.Errorf("ParseCreate(%s) error %v; want %s naming %s", tc.body, err, tc.code, tc.field)
		}
	}
}

// FuzzParseCreate: the parser never panics, every rejection is an *Error
// with a client code, and every accepted body holds a valid order that
// round-trips through the wire format.
func FuzzParseCreate(f *testing.F) {
	for _, s := range []string{
		`{"merchantId":"m1","date":"2022-06-22","price":36}`,
		`{"merchantId":"m1","date":"2022-06-22","price":36.5,"userId":"u1"}`,
		`{"merchantId":"m1","date":"2022-02-29","price":1e2}`,
		`{"merchantId":"m1","date":"2022-06-22","price":-0}`,
		`{"merchantId":"m1","date":"2022-06-22","price":1.234}`,
		`{"merchantId":"m1","date":"2022-06-22","price":36} {}`,
		`{"merchantId":"m1","date":"2022-06-22","price":36,"extra":[1,{"a":null}]}`,
		`{"merchantId":"\u006d1","date":"2022-06-22","price":0.10}`,
		`[]`, `null`, ``, `{`, `{"a"`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := order.ParseCreate(body)
		if err != nil {
			e, ok := order.AsError(err)
			if !ok || (e.Code != wire.CodeInvalidJSON && e.Code != wire.CodeInvalidField) || e.Message == "" {
				t.Fatalf("ParseCreate(%q) error %v is not a client error", body, err)
			}
			return
		}
		if !json.Valid(body) || !wire.ValidMerchantID(r.MerchantID) || !wire.ValidDate(r.Date) ||
			r.Price < 0 || r.Price > wire.MaxCents || (r.HasUserID && !wire.ValidUserID(r.UserID)) {
			t.Fatalf("ParseCreate(%q) accepted %+v", body, r)
		}
		// The price written back parses to the same cents.
		b, _ := r.Price.MarshalJSON()
		if c, err := wire.ParseCents(b); err != nil || c != r.Price {
			t.Fatalf("price %d wrote %s, read back %d, %v", r.Price, b, c, err)
		}
	})
}

func TestParseNotice(t *testing.T) {
	t.Parallel()
	if r, err := order.ParseNotice([]byte(`{"msg":"` + strings.Repeat("é", 1000) + `"}`)); err != nil || len([]rune(r.Msg)) != 1000 {
		t.Fatalf("1000 characters: %v", err)
	}
	for _, body := range []string{`{"msg":""}`, `{"msg":"` + strings.Repeat("a", 1001) + `"}`, `{}`, `{"msg":1}`, `{"msg":"a","x":1}`} {
		if _, err := order.ParseNotice([]byte(body)); err == nil {
			t.Errorf("ParseNotice(%.40s) accepted", body)
		}
	}
}

func FuzzParseNotice(f *testing.F) {
	f.Add([]byte(`{"msg":"hi"}`))
	f.Add([]byte(`{"msg":"\ud83d\ude00"}`))
	f.Add([]byte(`{"msg":""}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := order.ParseNotice(body)
		if err != nil {
			if _, ok := order.AsError(err); !ok {
				t.Fatalf("error %v is not a client error", err)
			}
			return
		}
		if n := len([]rune(r.Msg)); n < 1 || n > order.MaxNoticeChars {
			t.Fatalf("accepted %d characters", n)
		}
	})
}

func TestParseAck(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]uint64{`{"seq":0}`: 0, `{"seq":42}`: 42, ` {"seq": 9007199254740992} `: 1 << 53} {
		if got, err := order.ParseAck([]byte(body)); err != nil || got != want {
			t.Errorf("ParseAck(%s) = %d, %v; want %d", body, got, err, want)
		}
	}
	for _, body := range []string{``, `{}`, `{"seq":-1}`, `{"seq":1.0}`, `{"seq":1e3}`, `{"seq":"1"}`, `{"seq":null}`,
		`{"seq":9007199254740993}`, `{"seq":1,"seq":2}`, `{"seq":1,"x":0}`, `{"seq":1}{}`, `[1]`, `{"seq":01}`} {
		if _, err := order.ParseAck([]byte(body)); err == nil {
			t.Errorf("ParseAck(%s) accepted", body)
		}
	}
}

// FuzzParseAck: never panics; rejections are client errors; an accepted
// seq is the integer the body wrote, within bounds.
func FuzzParseAck(f *testing.F) {
	for _, s := range []string{`{"seq":0}`, `{"seq":42}`, `{"seq":-1}`, `{"seq":1.5}`, `{"seq":9007199254740993}`, `{"seq":1,"x":1}`, ``, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		seq, err := order.ParseAck(body)
		if err != nil {
			if e, ok := order.AsError(err); !ok || e.Message == "" {
				t.Fatalf("ParseAck(%q) error %v is not a client error", body, err)
			}
			return
		}
		var v struct {
			Seq json.Number `json:"seq"`
		}
		if err := json.Unmarshal(body, &v); err != nil || v.Seq.String() != strconv.FormatUint(seq, 10) || seq > 1<<53 {
			t.Fatalf("ParseAck(%q) = %d", body, seq)
		}
	})
}

func BenchmarkParseCreate(b *testing.B) {
	body := []byte(`{"merchantId":"m1","date":"2022-06-22","price":36.5}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := order.ParseCreate(body); err != nil {
			b.Fatal(err)
		}
	}
}
