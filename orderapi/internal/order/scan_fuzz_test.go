package order

import (
	"encoding/json"
	"slices"
	"testing"
)

var createKeys = []string{"merchantId", "date", "price", "userId"}

// The bodies clients send take the scanner, not encoding/json.
func TestScanFlatTakesOrderBodies(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{"merchantId":"m1","date":"2022-06-22","price":36}`,
		" {\"price\":36.5e0 ,\"date\":\"2024-02-29\",\n\"merchantId\":\"M_1-x\",\r\t\"userId\":\"u9\"}\n",
		`{"merchantId":null,"date":true,"price":-0.5E+2,"userId":false}`,
		`{}`,
	} {
		if _, ok := scanFlat([]byte(body), createKeys); !ok {
			t.Errorf("scanFlat(%s) fell back to encoding/json", body)
		}
	}
	for _, body := range []string{
		``, `{`, `{"merchantId":"m1",}`, `{"merchantId":"m1"} {}`, `{"x":1}`, `{"price":1,"price":2}`,
		`{"price":01}`, `{"price":1.}`, `{"price":.5}`, `{"price":1e}`, `{"price":+1}`, `{"price":tru}`,
		`{"merchantId":"\u006d1"}`, `{"merchant\u0049d":"m1"}`, `{"merchantId":"é"}`, `{"price":[1]}`,
	} {
		if _, ok := scanFlat([]byte(body), createKeys); ok {
			t.Errorf("scanFlat(%s) accepted", body)
		}
	}
}

// FuzzDecodeObject: whatever scanFlat accepts, encoding/json's path accepts
// too, with the same members in the same order, and each string member
// reads as encoding/json reads it.
func FuzzDecodeObject(f *testing.F) {
	for _, s := range []string{
		`{"merchantId":"m1","date":"2022-06-22","price":36}`,
		`{"merchantId":"m1","date":"2022-06-22","price":36.5,"userId":"u1"}`,
		` {"price":-0.0e-0 , "userId" : null,"date":true}` + "\n",
		`{"merchantId":"m1","merchantId":"m2"}`,
		`{"merchantId":"\u006d1","date":"a\"b"}`,
		`{"merchantId":"m1"}}`, `{"price":1}x`, `{}`, `{"price":01}`, `{"price":1.}`, `{"date":"\x7f\x1f"}`,
		`[]`, `null`, ``, `{`, `{"a"`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := scanFlat(body, createKeys)
		if !ok {
			return
		}
		slow, err := decodeAny(body, createKeys)
		if err != nil {
			t.Fatalf("scanFlat accepted %q, encoding/json: %v", body, err)
		}
		if !slices.EqualFunc(fast, slow, func(a, b member) bool { return a.key == b.key && string(a.raw) == string(b.raw) }) {
			t.Fatalf("%q: scanFlat %q, encoding/json %q", body, fast, slow)
		}
		for _, m := range fast {
			var want string
			if json.Unmarshal(m.raw, &want) != nil || m.raw[0] != '"' {
				continue
			}
			if got, err := requiredString(fast, m.key); err != nil || got != want {
				t.Fatalf("%q: %s read as %q, %v; encoding/json reads %q", body, m.key, got, err, want)
			}
		}
	})
}
