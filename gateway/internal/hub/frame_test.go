package hub

import (
	"errors"
	"testing"

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

func BenchmarkParseFrame(b *testing.B) {
	frame := fr(123456, 42)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseFrame(frame); err != nil {
			b.Fatal(err)
		}
	}
}
