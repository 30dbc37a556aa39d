package socketio

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// PacketType is the first character of a socket.io 5 packet.
type PacketType byte

// The packet types of socket.io protocol 5.
const (
	Connect      PacketType = '0'
	Disconnect   PacketType = '1'
	Event        PacketType = '2'
	Ack          PacketType = '3'
	ConnectError PacketType = '4'
	BinaryEvent  PacketType = '5'
	BinaryAck    PacketType = '6'
)

// NoID is Packet.ID when the packet asks for no acknowledgement.
const NoID = -1

// maxID bounds acknowledgement ids: the JavaScript client counts them up
// from 0, and a larger number could not round-trip through a JS number.
const maxID = 1<<53 - 1

// maxNamespace bounds a namespace name; only "/" is served anyway.
const maxNamespace = 128

// ErrBadPacket is wrapped by every decoding error.
var ErrBadPacket = errors.New("bad socket.io packet")

// Packet is one decoded packet. Namespace is "/" when the packet named
// none. Data is the JSON payload (nil when absent), validated as JSON and
// as the shape its type requires.
type Packet struct {
	Type      PacketType
	Namespace string
	ID        int64
	Data      json.RawMessage
}

// Decode parses a packet from an Engine.IO message. Binary packets
// (attachments) are refused: nothing in this protocol carries binary data.
func Decode(b []byte) (Packet, error) {
	if len(b) == 0 {
		return Packet{}, fmt.Errorf("%w: empty", ErrBadPacket)
	}
	p := Packet{Type: PacketType(b[0]), Namespace: "/", ID: NoID}
	switch p.Type {
	case Connect, Disconnect, Event, Ack, ConnectError:
	case BinaryEvent, BinaryAck:
		return Packet{}, fmt.Errorf("%w: binary packets are not supported", ErrBadPacket)
	default:
		return Packet{}, fmt.Errorf("%w: unknown type %q", ErrBadPacket, b[0])
	}
	i := 1
	if i < len(b) && b[i] == '/' {
		j := i
		for j < len(b) && b[j] != ',' {
			j++
		}
		if j-i > maxNamespace {
			return Packet{}, fmt.Errorf("%w: namespace longer than %d", ErrBadPacket, maxNamespace)
		}
		p.Namespace = string(b[i:j])
		i = j
		if i < len(b) {
			i++ // the comma
		}
	}
	if j := digits(b, i); j > i {
		if j-i > 16 {
			return Packet{}, fmt.Errorf("%w: ack id too long", ErrBadPacket)
		}
		id, err := strconv.ParseInt(string(b[i:j]), 10, 64)
		if err != nil || id > maxID {
			return Packet{}, fmt.Errorf("%w: bad ack id", ErrBadPacket)
		}
		p.ID, i = id, j
	}
	if i < len(b) {
		p.Data = json.RawMessage(b[i:])
		if !json.Valid(p.Data) {
			return Packet{}, fmt.Errorf("%w: payload is not JSON", ErrBadPacket)
		}
	}
	if err := checkShape(p); err != nil {
		return Packet{}, err
	}
	return p, nil
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// checkShape enforces what each type's payload must be
// (socket.io-protocol v5, "Packet format").
func checkShape(p Packet) error {
	first := firstByte(p.Data)
	switch p.Type {
	case Connect:
		if p.Data != nil && first != '{' {
			return fmt.Errorf("%w: CONNECT payload must be an object", ErrBadPacket)
		}
	case Disconnect:
		if p.Data != nil {
			return fmt.Errorf("%w: DISCONNECT carries no payload", ErrBadPacket)
		}
	case Event:
		var args []json.RawMessage
		if first != '[' || json.Unmarshal(p.Data, &args) != nil || len(args) == 0 || firstByte(args[0]) != '"' {
			return fmt.Errorf("%w: EVENT payload must be an array starting with the event name", ErrBadPacket)
		}
	case Ack:
		if first != '[' || p.ID == NoID {
			return fmt.Errorf("%w: ACK needs an id and an array payload", ErrBadPacket)
		}
	case ConnectError:
		if first != '{' && first != '"' {
			return fmt.Errorf("%w: CONNECT_ERROR payload must be an object or a string", ErrBadPacket)
		}
	}
	return nil
}

// firstByte is the first non-space byte of valid JSON, or 0.
func firstByte(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			return c
		}
	}
	return 0
}

// EventArgs splits an EVENT payload into the event name and its arguments.
func EventArgs(p Packet) (string, []json.RawMessage, error) {
	var args []json.RawMessage
	if err := json.Unmarshal(p.Data, &args); err != nil || len(args) == 0 {
		return "", nil, fmt.Errorf("%w: EVENT payload", ErrBadPacket)
	}
	var name string
	if err := json.Unmarshal(args[0], &name); err != nil {
		return "", nil, fmt.Errorf("%w: event name", ErrBadPacket)
	}
	return name, args[1:], nil
}

// Append appends the encoding of a packet on the default namespace: the
// type, the ack id when id >= 0, and data (already JSON) when not nil.
func Append(dst []byte, t PacketType, id int64, data []byte) []byte {
	dst = append(dst, byte(t))
	if id >= 0 {
		dst = strconv.AppendInt(dst, id, 10)
	}
	return append(dst, data...)
}

// AppendNS is Append for another namespace, used to refuse it.
func AppendNS(dst []byte, t PacketType, ns string, data []byte) []byte {
	dst = append(dst, byte(t))
	if ns != "/" {
		dst = append(dst, ns...)
		dst = append(dst, ',')
	}
	return append(dst, data...)
}
