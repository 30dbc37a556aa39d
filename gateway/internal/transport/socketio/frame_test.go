package socketio

import (
	"encoding/json"
	"testing"

	"orderpush/gateway/internal/session/sendq"
	"orderpush/gateway/internal/transport/engineio"
	"orderpush/pkg/wire"
)

// encode is what WriteFrames does with a merchant frame.
func encode(frame []byte, offset bool) []byte {
	f, off := frameOf(sendq.Entry{Data: frame})
	return appendEvent(nil, f, off, offset)
}

func TestAppendFrame(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		frame  string
		seq    uint64 // the entry's Seq, as the gateway sets it with a head
		offset bool
		want   string
	}{
		{`{"event":"order","seq":7,"ts":1700000000000,"data":{"orderSum":2}}`, 7, true, `42["order",{"seq":7,"ts":1700000000000,"data":{"orderSum":2}},"7"]`},
		{`{"event":"order","seq":7,"ts":1700000000000,"data":{"orderSum":2}}`, 7, false, `42["order",{"seq":7,"ts":1700000000000,"data":{"orderSum":2}}]`},
		{`{"event":"hello","data":{"connId":"c","seq":5,"orderSum":1}}`, 5, true, `42["hello",{"data":{"connId":"c","seq":5,"orderSum":1}},"5"]`},
		{`{"event":"hello","data":{"connId":"c","seq":5,"orderSum":1}}`, 5, false, `42["hello",{"data":{"connId":"c","seq":5,"orderSum":1}}]`},
		{`{"event":"resync","data":{"seq":0,"orderSum":0}}`, 0, true, `42["resync",{"data":{"seq":0,"orderSum":0}},"0"]`},
		{`{"event":"pong"}`, 0, true, `42["pong",{}]`},
		{`{"event":"notice","data":{"msg":"hi"}}`, 0, true, `42["notice",{"data":{"msg":"hi"}}]`},
		{`{"event":"a<\"b","data":null}`, 0, true, `42["a\u003c\"b",{"data":null}]`},
		{`not json`, 0, true, `42["error",{"data":{"code":"invalid_frame","message":"unreadable frame"}}]`},
	} {
		if got := string(encode([]byte(tc.frame), tc.offset)); got != tc.want {
			t.Errorf("encode(%s, %v)\n got %s\nwant %s", tc.frame, tc.offset, got, tc.want)
		}
		// With the head the hub or the session hands on: the same packet,
		// and no decoding.
		var h wire.Frame
		if json.Unmarshal([]byte(tc.frame), &h) != nil {
			continue
		}
		f, off := frameOf(sendq.Entry{Data: []byte(tc.frame), Seq: tc.seq, Head: &h})
		if got := string(appendEvent(nil, f, off, tc.offset)); got != tc.want {
			t.Errorf("with head: encode(%s, %v)\n got %s\nwant %s", tc.frame, tc.offset, got, tc.want)
		}
	}
}

// FuzzAppendFrame: whatever a publisher puts on a merchant channel, the
// client gets a well-formed EVENT.
func FuzzAppendFrame(f *testing.F) {
	f.Add([]byte(`{"event":"order","seq":7,"ts":1,"data":{"orderSum":2}}`))
	f.Add([]byte(`{"event":"hello","data":{"seq":"x"}}`))
	f.Add([]byte(`{"event":"a\"b","data":null}`))
	f.Fuzz(func(t *testing.T, frame []byte) {
		out := encode(frame, true)
		p, err := engineio.DecodePacket(out)
		if err != nil || p.Type != engineio.Message {
			t.Fatalf("engine.io packet %q: %v", out, err)
		}
		sp, err := Decode(p.Data)
		if err != nil || sp.Type != Event {
			t.Fatalf("socket.io packet %q: %v", p.Data, err)
		}
		if _, args, err := EventArgs(sp); err != nil || len(args) == 0 {
			t.Fatalf("event args of %q: %v", p.Data, err)
		}
	})
}

func TestClientFrame(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ event, want string }{
		{`["ping"]`, `{"event":"ping"}`},
		{`["process",{"orderNo":"u1"}]`, `{"event":"process","data":{"orderNo":"u1"}}`},
		{`["seen",{"orderNo":"u1"}]`, `{"event":"seen","data":{"orderNo":"u1"}}`},
		{`["ack",12]`, `{"event":"ack","seq":12}`},
		{`["ack",{"seq":12}]`, `{"event":"ack","seq":12}`},
	} {
		p, err := Decode([]byte("2" + tc.event))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(clientFrame(p)); got != tc.want {
			t.Errorf("clientFrame(%s) = %s, want %s", tc.event, got, tc.want)
		}
	}
	// Malformed events become frames the session refuses like any other
	// malformed frame.
	for _, event := range []string{`["frob"]`, `["process"]`, `["process",1,2]`, `["ping\"}"]`, `["ack",{"seq":"1"}]`} {
		p, err := Decode([]byte("2" + event))
		if err != nil {
			t.Fatal(err)
		}
		f := clientFrame(p)
		if _, err := wire.ParseClient(f); err == nil {
			t.Errorf("clientFrame(%s) = %s, which the session accepts", event, f)
		}
	}
}

func TestAckResult(t *testing.T) {
	t.Parallel()
	if got := string(ackResult(nil)); got != `[{"ok":true}]` {
		t.Errorf("success: %s", got)
	}
	if got := string(ackResult([]byte(`{"event":"pong"}`))); got != `[{"ok":true}]` {
		t.Errorf("pong: %s", got)
	}
	if got := string(ackResult([]byte(`{"event":"error","data":{"code":"not_found","message":"no such order"}}`))); got != `[{"ok":false,"error":{"code":"not_found","message":"no such order"}}]` {
		t.Errorf("error: %s", got)
	}
}

// FuzzClientFrame: whatever EVENT a client sends, the frame handed to the
// session is one JSON object (which the session then validates).
func FuzzClientFrame(f *testing.F) {
	f.Add([]byte(`["process",{"orderNo":"u1"}]`))
	f.Add([]byte(`["ack",{"seq":3}]`))
	f.Add([]byte(`["ack",7,8]`))
	f.Add([]byte(`["\u0000",null]`))
	f.Fuzz(func(t *testing.T, event []byte) {
		p, err := Decode(append([]byte{byte(Event)}, event...))
		if err != nil || p.Type != Event {
			return
		}
		var obj map[string]json.RawMessage
		if fr := clientFrame(p); json.Unmarshal(fr, &obj) != nil {
			t.Fatalf("clientFrame(%s) = %s, not a JSON object", event, fr)
		}
	})
}
