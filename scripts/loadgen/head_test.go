package loadgen

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"orderpush/pkg/wire"
)

func TestParseHead(t *testing.T) {
	t.Parallel()
	order := OrderFrame("m1", 42, time.Date(2026, 11, 26, 3, 17, 58, 0, time.UTC))
	cases := []struct {
		name    string
		frame   []byte
		want    Head
		wantErr bool
	}{
		{"order frame (fast path)", order, Head{Event: "order", Seq: 42}, false},
		{"hello has its seq in data, none at top", wire.MustEncode(wire.EventHello, 0, 0, wire.HelloData{Seq: 7, MerchantID: "m1"}), Head{Event: "hello"}, false},
		{"pong", []byte(`{"event":"pong"}`), Head{Event: "pong"}, false},
		{"seq after data (slow path)", []byte(`{"event":"order","data":{"seq":1},"seq":9}`), Head{Event: "order", Seq: 9}, false},
		{"ts before seq (slow path)", []byte(`{"event":"order","ts":5,"seq":3}`), Head{Event: "order", Seq: 3}, false},
		{"unknown event kept", []byte(`{"event":"x.y","seq":1}`), Head{Event: "x.y", Seq: 1}, false},
		{"escaped event name", []byte(`{"event":"ord\u0065r","seq":2}`), Head{Event: "order", Seq: 2}, false},
		{"not json", []byte(`hello`), Head{}, true},
		{"no event", []byte(`{"seq":1}`), Head{}, true},
		{"truncated", order[:40], Head{}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h, err := ParseHead(c.frame)
			if (err != nil) != c.wantErr {
				t.Fatalf("ParseHead(%q) error %v, want error %v", c.frame, err, c.wantErr)
			}
			if err == nil && h != c.want {
				t.Fatalf("ParseHead(%q) = %+v, want %+v", c.frame, h, c.want)
			}
		})
	}
}

func TestFastHeadDoesNotAllocate(t *testing.T) {
	fr := OrderFrame("m1", 123456, time.Now())
	allocs := testing.AllocsPerRun(100, func() {
		if h, err := ParseHead(fr); err != nil || h.Seq != 123456 {
			t.Fatalf("ParseHead: %+v %v", h, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("fast path allocates %v times per frame", allocs)
	}
}

func TestOrderNoAndSplitFrames(t *testing.T) {
	t.Parallel()
	now := time.Now()
	a, b := OrderFrame("m1", 1, now), OrderFrame("m1", 2, now)
	var o struct {
		Data wire.OrderData `json:"data"`
	}
	if err := json.Unmarshal(a, &o); err != nil {
		t.Fatal(err)
	}
	if got := string(OrderNo(a)); got != o.Data.Order.OrderNo || got == "" {
		t.Fatalf("OrderNo = %q, want %q", got, o.Data.Order.OrderNo)
	}
	if OrderNo([]byte(`{"event":"pong"}`)) != nil {
		t.Fatal("OrderNo of a pong is not nil")
	}
	var got [][]byte
	SplitFrames(bytes.Join([][]byte{a, b}, []byte("\n")), func(f []byte) { got = append(got, bytes.Clone(f)) })
	if len(got) != 2 || !bytes.Equal(got[0], a) || !bytes.Equal(got[1], b) {
		t.Fatalf("SplitFrames gave %d frames", len(got))
	}
	got = nil
	SplitFrames(a, func(f []byte) { got = append(got, f) })
	if len(got) != 1 {
		t.Fatalf("one frame split into %d", len(got))
	}
}

// FuzzParseHead: never panics; whenever the fast path accepts valid JSON, a
// full decode agrees with it.
func FuzzParseHead(f *testing.F) {
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	f.Add(OrderFrame("m1", 1, now))
	f.Add(OrderFrame("m1", 18446744073709551615, now))
	f.Add(wire.MustEncode(wire.EventHello, 0, 0, wire.HelloData{Seq: 3}))
	f.Add([]byte(`{"event":"order","seq":01}`))
	f.Add([]byte(`{"event":"order","seq":1,"seq":2}`))
	f.Add([]byte(`{"event":"order","seq":1`))
	f.Add([]byte(`{"event":"a\"b","seq":1}`))
	f.Add([]byte(`{"event":"order","seq":12345678901234567890}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHead(b)
		fh, fast := fastHead(b)
		if fast && (err != nil || h != fh) {
			t.Fatalf("fast path %+v but ParseHead %+v %v", fh, h, err)
		}
		if !fast || !json.Valid(b) {
			return
		}
		var full struct {
			Event string `json:"event"`
			Seq   uint64 `json:"seq"`
		}
		if json.Unmarshal(b, &full) != nil {
			return // e.g. a seq that overflows uint64 in the full decoder
		}
		if full.Event != fh.Event {
			t.Fatalf("%q: fast event %q, json %q", b, fh.Event, full.Event)
		}
		// A duplicate top-level "seq" is read first-wins by the fast path
		// and last-wins by encoding/json; wire.Encode never writes one.
		if full.Seq != fh.Seq && bytes.Count(b, []byte(`"seq"`)) < 2 {
			t.Fatalf("%q: fast seq %d, json %d", b, fh.Seq, full.Seq)
		}
	})
}
