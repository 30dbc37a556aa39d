package hub

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"orderpush/pkg/wire"
)

func testCount(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

func TestParseFrame(t *testing.T) {
	for _, tc := range []struct {
		in      string
		ok      bool
		seq     uint64
		sum     int64
		withSum bool
	}{
		{`{"event":"order","seq":7,"ts":1,"data":{"orderSum":3,"order":{}}}`, true, 7, 3, true},
		{`{"event":"notice","data":{"msg":"x"}}`, true, 0, 0, false},
		{`{"event":"order","seq":2}`, true, 2, 0, false},
		{`{"event":"order","seq":2,"data":[1]}`, true, 2, 0, false},
		{`{"seq":2}`, false, 0, 0, false},
		{`{"event":""}`, false, 0, 0, false},
		{`[1,2]`, false, 0, 0, false},
		{`null`, false, 0, 0, false},
		{`{"event":"x"} {"event":"y"}`, false, 0, 0, false},
		{`{"event":"x","seq":-1}`, false, 0, 0, false},
		{``, false, 0, 0, false},
	} {
		f, err := parseFrame([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Fatalf("%s: err %v", tc.in, err)
		}
		if err != nil {
			if !errors.Is(err, wire.ErrBadFrame) {
				t.Fatalf("%s: %v does not wrap ErrBadFrame", tc.in, err)
			}
			continue
		}
		if f.seq != tc.seq || f.hasSum != tc.withSum || f.orderSum != tc.sum || string(f.data) != tc.in {
			t.Fatalf("%s: %+v", tc.in, f)
		}
	}
}

// FuzzParseFrame: never panics; an accepted frame names an event, keeps its
// bytes, and agrees with wire.ParseHead on seq.
func FuzzParseFrame(f *testing.F) {
	for _, s := range []string{
		`{"event":"order","seq":7,"ts":1,"data":{"orderSum":3}}`,
		`{"event":"notice","data":{"msg":"x"}}`,
		`{"event":"resync","data":{"seq":1}}`,
		`{"event":"order","seq":18446744073709551615}`,
		`{"event":1}`, `{}`, `[]`, `"x"`, `{"event":"a","data":{"orderSum":"1"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := parseFrame(b)
		if err != nil {
			return
		}
		h, herr := wire.ParseHead(b)
		if herr != nil || h.Seq != fr.seq || string(fr.data) != string(b) {
			t.Fatalf("parseFrame %+v, ParseHead %+v %v", fr, h, herr)
		}
	})
}

// FuzzFastFrame: whatever the fast path accepts, encoding/json reads the
// same way.
func FuzzFastFrame(f *testing.F) {
	for _, s := range []string{
		`{"event":"order","seq":7,"ts":1,"data":{"orderSum":3,"msg":"m"}}`,
		`{"event":"order","seq":7,"data":{"orderSum":3,"ordersum":4}}`,
		`{"event":"order","seq":7,"data":{"orderSum":3,"order\u0053um":4}}`,
		`{"event":"order","seq":7,"data":{"orderSum":3,"orderſum":4}}`,
		`{"event":"order","seq":7,"data":{"orderSum":1.5}}`,
		`{"event":"order","seq":7,"data":{"orderSum":-0}}`,
		`{"event":"order","seq":7,"data":{"x":{"orderSum":2},"orderSum":3}}`,
		`{"event":"order","seq":7,"data":{"a":1}},"z":{}}`,
		`{"event":"order","seq":01}`, `{"event":"order","seq":-1}`, `{"event":"order","ts":-5}`,
		`{"event":"order","seq":18446744073709551616}`, `{"event":"n\u0041"}`, `{"event":"é"}`,
		`{"event":"notice","data":{"msg":"x"}}`, `{"event":"x","data":null}`, `{"event":"x","data":{}} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := fastFrame(b)
		if !ok {
			return
		}
		slow, err := decodeFrame(b)
		if err != nil {
			t.Fatalf("fast path took %q, encoding/json: %v", b, err)
		}
		if fast.seq != slow.seq || fast.ts != slow.ts || fast.hasSum != slow.hasSum || fast.orderSum != slow.orderSum ||
			string(fast.data) != string(b) || fast.head.Event != slow.head.Event || fast.head.Seq != slow.head.Seq ||
			fast.head.TS != slow.head.TS || string(fast.head.Data) != string(slow.head.Data) {
			t.Fatalf("%q: fast %+v %+v, encoding/json %+v %+v", b, fast, *fast.head, slow, *slow.head)
		}
	})
}

// orderFrame is an order frame as the order API publishes it.
func orderFrame(seq uint64, sum int64) []byte {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	return wire.MustEncode(wire.EventOrder, seq, now.UnixMilli(), wire.OrderData{OrderSum: sum, Msg: wire.NewOrderMsg,
		Order: wire.Order{OrderNo: wire.NewOrderNo("u1001", now), MerchantID: "m1", UserID: "u1001", Date: "2022-06-22",
			Price: 3650, Status: wire.StatusPending, CreatedAt: now}})
}

// TestFastFrameTakesPublishedFrames: the frames the order API and the
// gateway publish take the fast path.
func TestFastFrameTakesPublishedFrames(t *testing.T) {
	for _, b := range [][]byte{orderFrame(123456, 42), fr(7, -3),
		wire.MustEncode(wire.EventNotice, 0, 0, map[string]string{"msg": "x"})} {
		f, ok := fastFrame(b)
		if !ok {
			t.Fatalf("%s: not on the fast path", b)
		}
		if slow, err := decodeFrame(b); err != nil || f.seq != slow.seq || f.hasSum != slow.hasSum || f.orderSum != slow.orderSum {
			t.Fatalf("%s: fast %+v, encoding/json %+v %v", b, f, slow, err)
		}
	}
}

func BenchmarkParseFrame(b *testing.B) {
	frame := orderFrame(123456, 42)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseFrame(frame); err != nil {
			b.Fatal(err)
		}
	}
}
