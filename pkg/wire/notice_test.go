package wire_test

import (
	"encoding/json"
	"errors"
	"testing"

	"orderpush/pkg/wire"
)

func TestParseNotice(t *testing.T) {
	t.Parallel()
	frame := wire.MustEncode(wire.EventNotice, 0, 5, wire.NoticeData{Msg: "hi"})
	env, err := json.Marshal(wire.Notice{ConnID: "c1", Frame: frame})
	if err != nil {
		t.Fatal(err)
	}
	n, err := wire.ParseNotice(env)
	if err != nil || n.ConnID != "c1" || string(n.Frame) != string(frame) {
		t.Fatalf("ParseNotice = %+v, %v", n, err)
	}
	for _, in := range []string{
		``, `x`, `[]`, `{}`, `{"connId":"c1"}`, `{"connId":"","frame":{"event":"notice"}}`,
		`{"connId":"c1","frame":{}}`, `{"connId":"c1","frame":"x"}`, `{"connId":1,"frame":{"event":"notice"}}`,
	} {
		if _, err := wire.ParseNotice([]byte(in)); !errors.Is(err, wire.ErrBadFrame) {
			t.Errorf("ParseNotice(%q) err = %v, want ErrBadFrame", in, err)
		}
	}
}

func FuzzParseNotice(f *testing.F) {
	f.Add(`{"connId":"c1","frame":{"event":"notice","ts":1,"data":{"msg":"x"}}}`)
	f.Add(`{"connId":"c1","frame":{"event":`)
	f.Add(`{"connId":"","frame":null}`)
	f.Fuzz(func(t *testing.T, s string) {
		n, err := wire.ParseNotice([]byte(s))
		if err != nil {
			if !errors.Is(err, wire.ErrBadFrame) {
				t.Fatalf("error %v does not wrap ErrBadFrame", err)
			}
			return
		}
		if n.ConnID == "" {
			t.Fatalf("accepted %q without connId", s)
		}
		if _, err := wire.ParseHead(n.Frame); err != nil {
			t.Fatalf("accepted %q with a bad frame: %v", s, err)
		}
	})
}
