package socketio

import (
	"bytes"
	"errors"
	"testing"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		typ     PacketType
		ns      string
		id      int64
		data    string
		wantErr bool
	}{
		{in: "0", typ: Connect, ns: "/", id: NoID},
		{in: `0{"token":"abc"}`, typ: Connect, ns: "/", id: NoID, data: `{"token":"abc"}`},
		{in: `0/admin,{"token":"abc"}`, typ: Connect, ns: "/admin", id: NoID, data: `{"token":"abc"}`},
		{in: "0/admin,", typ: Connect, ns: "/admin", id: NoID},
		{in: "1", typ: Disconnect, ns: "/", id: NoID},
		{in: `2["process",{"orderNo":"u1"}]`, typ: Event, ns: "/", id: NoID, data: `["process",{"orderNo":"u1"}]`},
		{in: `212["ping"]`, typ: Event, ns: "/", id: 12, data: `["ping"]`},
		{in: `2/x,7["ping"]`, typ: Event, ns: "/x", id: 7, data: `["ping"]`},
		{in: `31[{"ok":true}]`, typ: Ack, ns: "/", id: 1, data: `[{"ok":true}]`},
		{in: `4{"message":"no"}`, typ: ConnectError, ns: "/", id: NoID, data: `{"message":"no"}`},
		{in: "", wantErr: true},
		{in: "7", wantErr: true},
		{in: `51-["x",{"_placeholder":true,"num":0}]`, wantErr: true},
		{in: `0[1]`, wantErr: true},
		{in: `1{}`, wantErr: true},
		{in: `2{"a":1}`, wantErr: true},
		{in: `2[]`, wantErr: true},
		{in: `2[1]`, wantErr: true},
		{in: `2["x"`, wantErr: true},
		{in: `3["x"]`, wantErr: true},
		{in: `299999999999999999["x"]`, wantErr: true},
		{in: `49`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			p, err := Decode([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, ErrBadPacket) {
					t.Fatalf("Decode(%q) = %+v, %v; want ErrBadPacket", tt.in, p, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%q): %v", tt.in, err)
			}
			if p.Type != tt.typ || p.Namespace != tt.ns || p.ID != tt.id || string(p.Data) != tt.data {
				t.Fatalf("Decode(%q) = %+v (data %s)", tt.in, p, p.Data)
			}
		})
	}
}

func TestEventArgs(t *testing.T) {
	t.Parallel()
	p, err := Decode([]byte(`2["ack",{"seq":3},"x"]`))
	if err != nil {
		t.Fatal(err)
	}
	name, args, err := EventArgs(p)
	if err != nil || name != "ack" || len(args) != 2 || string(args[0]) != `{"seq":3}` {
		t.Fatalf("EventArgs = %q %s %v", name, args, err)
	}
}

// FuzzDecode: never panics; errors wrap ErrBadPacket; an accepted packet on
// the default namespace re-encodes to what was decoded, and decoding that
// again gives the same packet.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"0", `0{"token":"t","pid":"p","offset":"3"}`, `0/admin,{}`, "1", `2["process",{"orderNo":"u10011795659478123"}]`,
		`21["ping"]`, `2["ack",{"seq":1}]`, `31[{}]`, `4{"message":"x"}`, `51-["a",{"_placeholder":true,"num":0}]`, `2/x,`, "2 [\"a\"]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrBadPacket) {
				t.Fatalf("error does not wrap ErrBadPacket: %v", err)
			}
			return
		}
		var enc []byte
		if p.Namespace == "/" {
			enc = Append(nil, p.Type, p.ID, p.Data)
		} else {
			if p.ID != NoID {
				return // AppendNS carries no id: only used to refuse a namespace
			}
			enc = AppendNS(nil, p.Type, p.Namespace, p.Data)
		}
		q, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded %q -> %q does not decode: %v", b, enc, err)
		}
		if q.Type != p.Type || q.Namespace != p.Namespace || q.ID != p.ID || !bytes.Equal(q.Data, p.Data) {
			t.Fatalf("round trip %q: %+v != %+v", b, q, p)
		}
	})
}
