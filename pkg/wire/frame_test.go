package wire_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"orderpush/pkg/wire"
)

func TestEncodeFrame(t *testing.T) {
	t.Parallel()
	b := wire.MustEncode(wire.EventOrder, 42, 1700000000000, wire.OrderData{OrderSum: 3, Msg: wire.NewOrderMsg, Order: wire.Order{OrderNo: "a<b"}})
	s := string(b)
	if !strings.HasPrefix(s, `{"event":"order","seq":42,"ts":1700000000000,"data":{"orderSum":3,"msg":"您收到一条新订单，赶快去处理吧"`) {
		t.Fatalf("frame %s", s)
	}
	if strings.Contains(s, `\u003c`) {
		t.Fatalf("HTML-escaped: %s", s)
	}
	h, err := wire.ParseHead(b)
	if err != nil || h.Event != wire.EventOrder || h.Seq != 42 || h.TS != 1700000000000 {
		t.Fatalf("head %+v, %v", h, err)
	}
	// Frames outside the stream carry no seq at all.
	if s := string(wire.ErrorFrame("bad", "why")); s != `{"event":"error","data":{"code":"bad","message":"why"}}` {
		t.Fatalf("error frame %s", s)
	}
}

func TestParseHead(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "[]", "{}", `{"event":""}`, "nope", `{"event":"order","seq":-1}`, `{"event":"order","seq":"1"}`} {
		if _, err := wire.ParseHead([]byte(in)); !errors.Is(err, wire.ErrBadFrame) {
			t.Errorf("ParseHead(%q) err = %v, want ErrBadFrame", in, err)
		}
	}
	h, err := wire.ParseHead([]byte(`{"event":"notice","data":{"msg":"x"}}`))
	if err != nil || h.Seq != 0 {
		t.Fatalf("notice head %+v %v", h, err)
	}
}

func TestParseClient(t *testing.T) {
	t.Parallel()
	good := map[string]wire.ClientFrame{
		`{"event":"ping"}`: {Event: "ping"},
		`{"event":"process","data":{"orderNo":"u100117641270781231234"}}`: {Event: "process", OrderNo: "u100117641270781231234"},
	}
	for in, want := range good {
		got, err := wire.ParseClient([]byte(in))
		if err != nil || got != want {
			t.Errorf("ParseClient(%s) = %+v, %v", in, got, err)
		}
	}
	bad := []string{
		``, `x`, `{}`, `{"event":"subscribe"}`, `{"event":"ping","x":1}`, `{"event":"ping"} {}`,
		`{"event":"process"}`, `{"event":"process","data":{}}`, `{"event":"process","data":{"orderNo":"../x"}}`,
		`{"event":"process","data":{"orderNo":"u1","extra":1}}`, `{"event":1}`, `[]`,
	}
	for _, in := range bad {
		if _, err := wire.ParseClient([]byte(in)); !errors.Is(err, wire.ErrBadFrame) {
			t.Errorf("ParseClient(%q) err = %v, want ErrBadFrame", in, err)
		}
	}
}

func FuzzParseClient(f *testing.F) {
	f.Add(`{"event":"ping"}`)
	f.Add(`{"event":"process","data":{"orderNo":"u100117641270781231234"}}`)
	f.Add(`{"event":"process","data":{"orderNo":`)
	f.Add(`{"event":"pi`)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := wire.ParseClient([]byte(s))
		if err != nil {
			if !errors.Is(err, wire.ErrBadFrame) {
				t.Fatalf("error %v does not wrap ErrBadFrame", err)
			}
			return
		}
		switch c.Event {
		case wire.EventPing:
		case wire.EventProcess:
			if !wire.ValidOrderNo(c.OrderNo) {
				t.Fatalf("accepted bad orderNo %q", c.OrderNo)
			}
		default:
			t.Fatalf("accepted event %q", c.Event)
		}
	})
}

func FuzzParseHead(f *testing.F) {
	f.Add(string(wire.MustEncode(wire.EventOrder, 1, 2, wire.OrderData{})))
	f.Add(`{"event":"notice","data":{"msg":"x"}}`)
	f.Fuzz(func(t *testing.T, s string) {
		h, err := wire.ParseHead([]byte(s))
		if err == nil && (h.Event == "" || !json.Valid([]byte(s))) {
			t.Fatalf("accepted %q as %+v", s, h)
		}
	})
}
