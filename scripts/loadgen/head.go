package loadgen

import (
	"bytes"
	"encoding/json"
	"errors"

	"orderpush/pkg/wire"
)

// Head is what the load generator reads from a server frame.
type Head struct {
	Event string
	Seq   uint64
}

var (
	prefixEvent = []byte(`{"event":"`)
	afterEvent  = []byte(`,"seq":`)
	keyOrderNo  = []byte(`"orderNo":"`)
)

// Known event names, so the fast path returns them without allocating.
var knownEvents = []string{wire.EventOrder, wire.EventOrderProcessed, wire.EventHello,
	wire.EventNotice, wire.EventResync, wire.EventPong, wire.EventError}

// errNoEvent is returned for a frame that is not a JSON object with an event.
var errNoEvent = errors.New("frame has no event")

// ParseHead reads the event and top-level seq of one server frame. Frames
// built by wire.Encode start {"event":"<name>","seq":N and take a fast path
// that neither allocates nor decodes the rest; anything else is decoded
// fully, so an unusual field order is read correctly, only slower.
func ParseHead(b []byte) (Head, error) {
	if h, ok := fastHead(b); ok {
		return h, nil
	}
	var h struct {
		Event string `json:"event"`
		Seq   uint64 `json:"seq"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return Head{}, err
	}
	if h.Event == "" {
		return Head{}, errNoEvent
	}
	return Head{Event: h.Event, Seq: h.Seq}, nil
}

// fastHead handles exactly the shape wire.Encode writes for stream frames.
func fastHead(b []byte) (Head, bool) {
	if !bytes.HasPrefix(b, prefixEvent) {
		return Head{}, false
	}
	rest := b[len(prefixEvent):]
	end := bytes.IndexByte(rest, '"')
	if end <= 0 {
		return Head{}, false
	}
	for _, c := range rest[:end] {
		// Event names are plain ASCII; escapes and other bytes take the
		// slow path, which decodes them as JSON does.
		if c <= ' ' || c >= 0x7f || c == '\\' {
			return Head{}, false
		}
	}
	name := rest[:end]
	rest = rest[end+1:]
	if !bytes.HasPrefix(rest, afterEvent) {
		return Head{}, false
	}
	rest = rest[len(afterEvent):]
	var seq uint64
	i := 0
	for ; i < len(rest) && i < 20 && rest[i] >= '0' && rest[i] <= '9'; i++ {
		seq = seq*10 + uint64(rest[i]-'0')
	}
	// A seq is followed by the next member or the end of the object; a
	// leading zero or 20 digits is not what wire.Encode writes.
	if i == 0 || i >= 20 || (rest[0] == '0' && i > 1) || i == len(rest) || (rest[i] != ',' && rest[i] != '}') {
		return Head{}, false
	}
	// Not json.Valid: at half a million frames a second a full scan costs
	// the load generator a core. A frame must at least close its object.
	if b[len(b)-1] != '}' {
		return Head{}, false
	}
	h := Head{Seq: seq}
	for _, e := range knownEvents {
		if string(name) == e {
			h.Event = e
			return h, true
		}
	}
	h.Event = string(name)
	return h, true
}

// OrderNo returns the first orderNo in a frame (its data.order.orderNo for
// order frames), or nil. It scans instead of decoding: order numbers are
// [A-Za-z0-9_-] and digits, never escaped.
func OrderNo(b []byte) []byte {
	i := bytes.Index(b, keyOrderNo)
	if i < 0 {
		return nil
	}
	rest := b[i+len(keyOrderNo):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 {
		return nil
	}
	return rest[:j]
}

// SplitFrames calls fn for each frame of a message: with ?batch=1 the gateway
// may put several frames in one message, separated by '\n' (PROTOCOL.md,
// "Merchant socket"); JSON strings never hold a raw newline.
func SplitFrames(msg []byte, fn func(frame []byte)) {
	for len(msg) > 0 {
		i := bytes.IndexByte(msg, '\n')
		if i < 0 {
			fn(msg)
			return
		}
		if i > 0 {
			fn(msg[:i])
		}
		msg = msg[i+1:]
	}
}
