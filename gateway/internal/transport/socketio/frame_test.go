package socketio

import (
	"encoding/json"
	"testing"

	"orderpush/gateway/internal/transport/engineio"
)

func TestAppendFrame(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		frame  string
		offset bool
		want   string
	}{
		{`{"event":"order","seq":7,"ts":1700000000000,"data":{"orderSum":2}}`, true, `42["order",{"seq":7,"ts":1700000000000,"data":{"orderSum":2}},"7"]`},
		{`{"event":"order","seq":7,"ts":1700000000000,"data":{"orderSum":2}}`, false, `42["order",{"seq":7,"ts":1700000000000,"data":{"orderSum":2}}]`},
		{`{"event":"hello","data":{"connId":"c","seq":5,"orderSum":1}}`, true, `42["hello",{"data":{"connId":"c","seq":5,"orderSum":1}},"5"]`},
		{`{"event":"hello","data":{"connId":"c","seq":5,"orderSum":1}}`, false, `42["hello",{"data":{"connId":"c","seq":5,"orderSum":1}}]`},
		{`{"event":"resync","data":{"seq":0,"orderSum":0}}`, true, `42["resync",{"data":{"seq":0,"orderSum":0}},"0"]`},
		{`{"event":"pong"}`, true, `42["pong",{}]`},
		{`{"event":"notice","data":{"msg":"hi"}}`, true, `42["notice",{"data":{"msg":"hi"}}]`},
		{`not json`, true, `42["error",{"data":{"code":"invalid_frame","message":"unreadable frame"}}]`},
	} {
		if got := string(AppendFrame(nil, []byte(tc.frame), tc.offset)); got != tc.want {
			t.Errorf("AppendFrame(%s, %v)\n got %s\nwant %s", tc.frame, tc.offset, got, tc.want)
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
		out := AppendFrame(nil, frame, true)
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
	raw := func(s ...string) []json.RawMessage {
		var out []json.RawMessage
		for _, x := range s {
			out = append(out, json.RawMessage(x))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		args []json.RawMessage
		want string
	}{
		{"ping", nil, `{"event":"ping"}`},
		{"process", raw(`{"orderNo":"u1"}`), `{"event":"process","data":{"orderNo":"u1"}}`},
		{"seen", raw(`{"orderNo":"u1"}`), `{"event":"seen","data":{"orderNo":"u1"}}`},
		{"ack", raw(`12`), `{"event":"ack","seq":12}`},
		{"ack", raw(`{"seq":12}`), `{"event":"ack","seq":12}`},
	} {
		got, err := clientFrame(tc.name, tc.args)
		if err != nil || string(got) != tc.want {
			t.Errorf("clientFrame(%s, %s) = %s, %v; want %s", tc.name, tc.args, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		args []json.RawMessage
	}{
		{"frob", nil}, {"process", nil}, {"ack", raw(`"x"`)}, {"ack", raw(`{"seq":"1"}`)}, {"ack", nil},
	} {
		if got, err := clientFrame(tc.name, tc.args); err == nil {
			t.Errorf("clientFrame(%s, %s) = %s, want an error", tc.name, tc.args, got)
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

func TestParseOffset(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"0": 0, "17": 17, "9223372036854775807": 1<<63 - 1} {
		if got, err := parseOffset(in); err != nil || got != want {
			t.Errorf("parseOffset(%q) = %d, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "-1", "1.5", " 1", "9223372036854775808", "0x10"} {
		if _, err := parseOffset(bad); err == nil {
			t.Errorf("parseOffset(%q) accepted", bad)
		}
	}
}
