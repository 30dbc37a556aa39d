package wire_test

import (
	"encoding/json"
	"errors"
	"strconv"
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
	if s := string(wire.MustEncode(wire.EventError, 0, 0, wire.ErrorData{Code: "bad", Message: "why"})); s != `{"event":"error","data":{"code":"bad","message":"why"}}` {
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
		`{"event":"seen","data":{"orderNo":"u100117641270781231234"}}`:    {Event: "seen", OrderNo: "u100117641270781231234"},
		`{"event":"ack","seq":1}`:                {Event: "ack", Seq: 1},
		`{"seq":42,"event":"ack"}`:               {Event: "ack", Seq: 42},
		`{"event":"ack","seq":9007199254740992}`: {Event: "ack", Seq: wire.MaxAckSeq},
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
		// seen: the same data as process.
		`{"event":"seen"}`, `{"event":"seen","data":{}}`, `{"event":"seen","data":{"orderNo":"../x"}}`,
		`{"event":"seen","data":"u100117641270781231234"}`, `{"event":"seen","seq":1,"data":{"orderNo":"u100117641270781231234"}}`,
		// ack: a positive integer seq in plain digits, nothing else.
		`{"event":"ack"}`, `{"event":"ack","seq":0}`, `{"event":"ack","seq":-1}`, `{"event":"ack","seq":1.5}`,
		`{"event":"ack","seq":1e3}`, `{"event":"ack","seq":"1"}`, `{"event":"ack","seq":01}`, `{"event":"ack","seq":null}`,
		`{"event":"ack","seq":9007199254740993}`, `{"event":"ack","seq":18446744073709551616}`, `{"event":"ack","seq":true}`,
		`{"event":"ack","seq":1,"data":{}}`, `{"event":"ack","data":{"seq":1}}`, `{"event":"ping","seq":1}`,
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
	f.Add(`{"event":"ack","seq":17}`)
	f.Add(`{"event":"ack","seq":1e2}`)
	f.Add(`{"event":"seen","data":{"orderNo":"u100117641270781231234"}}`)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := wire.ParseClient([]byte(s))
		if err != nil {
			if !errors.Is(err, wire.ErrBadFrame) {
				t.Fatalf("error %v does not wrap ErrBadFrame", err)
			}
			return
		}
		if c.Seq != 0 && c.Event != wire.EventAck || c.OrderNo != "" && c.Event != wire.EventProcess && c.Event != wire.EventSeen {
			t.Fatalf("%q: fields of another event in %+v", s, c)
		}
		switch c.Event {
		case wire.EventPing:
		case wire.EventProcess, wire.EventSeen:
			if !wire.ValidOrderNo(c.OrderNo) {
				t.Fatalf("accepted bad orderNo %q", c.OrderNo)
			}
		case wire.EventAck:
			if c.Seq < 1 || c.Seq > wire.MaxAckSeq {
				t.Fatalf("%q: accepted ack seq %d", s, c.Seq)
			}
			// The seq is the number as written: it round-trips.
			var back struct{ Seq json.Number }
			if json.Unmarshal([]byte(s), &back) != nil || string(back.Seq) != strconv.FormatUint(c.Seq, 10) {
				t.Fatalf("%q: seq %d is not the number written", s, c.Seq)
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
