package engineio

import (
	"bytes"
	"errors"
	"testing"
)

func TestDecodePacket(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		want   Packet
		errMsg bool
	}{
		{in: "2", want: Packet{Type: Ping, Data: []byte{}}},
		{in: "2probe", want: Packet{Type: Ping, Data: []byte("probe")}},
		{in: `4{"a":1}`, want: Packet{Type: Message, Data: []byte(`{"a":1}`)}},
		{in: "6", want: Packet{Type: Noop, Data: []byte{}}},
		{in: "bAQID", want: Packet{Type: Message, Data: []byte{1, 2, 3}, Binary: true}},
		{in: "", errMsg: true},
		{in: "7", errMsg: true},
		{in: "x", errMsg: true},
		{in: "b!!", errMsg: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := DecodePacket([]byte(tt.in))
			if tt.errMsg {
				if !errors.Is(err, ErrBadPacket) {
					t.Fatalf("DecodePacket(%q) err = %v, want ErrBadPacket", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodePacket(%q): %v", tt.in, err)
			}
			if got.Type != tt.want.Type || got.Binary != tt.want.Binary || !bytes.Equal(got.Data, tt.want.Data) {
				t.Fatalf("DecodePacket(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestDecodePayload(t *testing.T) {
	t.Parallel()
	ps, err := DecodePayload([]byte("40{\"token\":\"x\"}\x1e3\x1e42[\"ping\"]"), 16)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 3 || ps[0].Type != Message || string(ps[0].Data) != `0{"token":"x"}` || ps[1].Type != Pong || string(ps[2].Data) != `2["ping"]` {
		t.Fatalf("payload = %+v", ps)
	}
	if _, err := DecodePayload([]byte("3\x1e3\x1e3"), 2); !errors.Is(err, ErrBadPacket) {
		t.Fatalf("3 packets with max 2: err = %v", err)
	}
	if _, err := DecodePayload([]byte("3\x1e\x1e3"), 8); !errors.Is(err, ErrBadPacket) {
		t.Fatalf("empty packet inside: err = %v", err)
	}
	if _, err := DecodePayload(nil, 8); !errors.Is(err, ErrBadPacket) {
		t.Fatalf("empty payload: err = %v", err)
	}
}

// FuzzDecodePayload: never panics; every accepted text packet re-encodes to
// its input, so the payload round-trips.
func FuzzDecodePayload(f *testing.F) {
	for _, s := range []string{"2", "3", "40", "40{\"token\":\"t\"}\x1e3", "42[\"ping\"]\x1e42[\"ack\",{\"seq\":3}]", "bAQID", "5", "6", "1", "\x1e", "b", "4\x1e"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := DecodePayload(b, 64)
		if err != nil {
			if !errors.Is(err, ErrBadPacket) {
				t.Fatalf("error does not wrap ErrBadPacket: %v", err)
			}
			return
		}
		var out []byte
		for i, p := range ps {
			if i > 0 {
				out = append(out, Separator)
			}
			if p.Binary {
				return // base64 has several encodings of one value; nothing to compare
			}
			out = AppendPacket(out, p.Type, p.Data)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip %q -> %q", b, out)
		}
	})
}
