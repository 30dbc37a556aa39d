package engineio

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
)

// PacketType is the first character of an Engine.IO 4 packet.
type PacketType byte

// The packet types of Engine.IO protocol 4.
const (
	Open    PacketType = '0'
	Close   PacketType = '1'
	Ping    PacketType = '2'
	Pong    PacketType = '3'
	Message PacketType = '4'
	Upgrade PacketType = '5'
	Noop    PacketType = '6'
)

// Separator joins the packets of a polling payload (ASCII record separator).
const Separator = 0x1e

// ErrBadPacket is wrapped by every decoding error.
var ErrBadPacket = errors.New("bad engine.io packet")

// Packet is one decoded packet. Binary is set for a message that arrived
// as binary (a WebSocket binary message, or "b" + base64 in a payload);
// Data then holds the decoded bytes.
type Packet struct {
	Type   PacketType
	Data   []byte
	Binary bool
}

// DecodePacket decodes one text packet. Data aliases b.
func DecodePacket(b []byte) (Packet, error) {
	if len(b) == 0 {
		return Packet{}, fmt.Errorf("%w: empty", ErrBadPacket)
	}
	if b[0] == 'b' {
		data, err := base64.StdEncoding.AppendDecode(nil, b[1:])
		if err != nil {
			return Packet{}, fmt.Errorf("%w: binary base64: %v", ErrBadPacket, err)
		}
		return Packet{Type: Message, Data: data, Binary: true}, nil
	}
	t := PacketType(b[0])
	if t < Open || t > Noop {
		return Packet{}, fmt.Errorf("%w: unknown type %q", ErrBadPacket, b[0])
	}
	return Packet{Type: t, Data: b[1:]}, nil
}

// DecodePayload splits a polling payload into packets; it refuses more than
// maxPackets of them (a flood of empty packets costs little to send).
func DecodePayload(b []byte, maxPackets int) ([]Packet, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty payload", ErrBadPacket)
	}
	n := bytes.Count(b, []byte{Separator}) + 1
	if n > maxPackets {
		return nil, fmt.Errorf("%w: %d packets in one payload (at most %d)", ErrBadPacket, n, maxPackets)
	}
	out := make([]Packet, 0, n)
	for part := range bytes.SplitSeq(b, []byte{Separator}) {
		p, err := DecodePacket(part)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// AppendPacket appends the text encoding of a packet (type, then data).
// Binary messages are never sent by this server.
func AppendPacket(dst []byte, t PacketType, data []byte) []byte {
	dst = append(dst, byte(t))
	return append(dst, data...)
}
