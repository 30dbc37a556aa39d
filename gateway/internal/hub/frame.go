package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"orderpush/gateway/internal/session/sendq"
	"orderpush/pkg/wire"
)

// frame is a server frame as received from Redis or a back-fill, with what
// the hub routes by. data is forwarded to sockets unchanged; head is it
// decoded, handed on with it so no socket decodes it again.
type frame struct {
	data     []byte
	head     *wire.Frame
	seq      uint64
	ts       int64
	orderSum int64
	hasSum   bool
}

var errNoEvent = errors.New("no event")

// parseFrame reads a frame published on a merchant channel: a JSON object
// with an event name, and for merchant events its seq, ts and data.orderSum.
// Anything else is rejected so a gateway never forwards garbage to sockets.
// A data member that is not the usual object (a frame outside the
// merchant's stream may carry anything there) is accepted, without a sum.
//
// Frames as wire.Encode writes them take a fast path that reads the head
// in place and checks the rest with one validity scan; any other shape is
// decoded in full. Both give the same frame for the same bytes.
func parseFrame(b []byte) (frame, error) {
	if f, ok := fastFrame(b); ok {
		return f, nil
	}
	return decodeFrame(b)
}

// decodeFrame is parseFrame by encoding/json.
func decodeFrame(b []byte) (frame, error) {
	var v wire.Frame
	if err := json.Unmarshal(b, &v); err != nil {
		return frame{}, fmt.Errorf("%w: %v", wire.ErrBadFrame, err)
	}
	if v.Event == "" {
		return frame{}, fmt.Errorf("%w: %w", wire.ErrBadFrame, errNoEvent)
	}
	f := frame{data: b, head: &v, seq: v.Seq, ts: v.TS}
	if v.Seq > 0 {
		f.orderSum, f.hasSum = decodeSum(v.Data)
	}
	return f, nil
}

// decodeSum is data.orderSum as encoding/json reads it.
func decodeSum(data []byte) (int64, bool) {
	var d struct {
		OrderSum *int64 `json:"orderSum"`
	}
	if json.Unmarshal(data, &d) != nil || d.OrderSum == nil {
		return 0, false
	}
	return *d.OrderSum, true
}

// Known event names, so the fast path returns them without allocating.
var knownEvents = []string{wire.EventOrder, wire.EventOrderProcessed, wire.EventOrderSeen,
	wire.EventNotice, wire.EventHello, wire.EventResync}

// fastFrame parses exactly {"event":"E"[,"seq":N][,"ts":T][,"data":{...}]}
// with E printable ASCII without escapes, N and T integers, and data an
// object (wire.Encode's output for stream frames and notices), and reports
// false for anything else. data is checked with json.Valid; the members
// before it are checked here, so the whole frame is valid JSON, and being
// each named once, they decode as encoding/json would decode them.
func fastFrame(b []byte) (frame, bool) {
	rest, ok := bytes.CutPrefix(b, []byte(`{"event":"`))
	if !ok {
		return frame{}, false
	}
	end := bytes.IndexByte(rest, '"')
	if end <= 0 {
		return frame{}, false
	}
	name := rest[:end]
	for _, c := range name {
		if c < 0x20 || c > 0x7e || c == '\\' {
			return frame{}, false
		}
	}
	rest = rest[end+1:]
	h := &wire.Frame{Event: eventName(name)}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"seq":`)); ok {
		var n []byte
		n, rest = number(rest)
		if h.Seq, ok = parseUint(n); !ok {
			return frame{}, false
		}
	}
	if r, ok := bytes.CutPrefix(rest, []byte(`,"ts":`)); ok {
		var n []byte
		n, rest = number(r)
		if h.TS, ok = parseInt(n); !ok {
			return frame{}, false
		}
	}
	if r, ok := bytes.CutPrefix(rest, []byte(`,"data":`)); ok {
		// The object must run to the frame's closing brace: ending in '}'
		// and valid, it is one object with nothing after it.
		data, ok := bytes.CutSuffix(r, []byte("}"))
		if !ok || len(data) < 2 || data[0] != '{' || data[len(data)-1] != '}' || !json.Valid(data) {
			return frame{}, false
		}
		h.Data = data
		rest = []byte("}")
	}
	if len(rest) != 1 || rest[0] != '}' {
		return frame{}, false
	}
	f := frame{data: b, head: h, seq: h.Seq, ts: h.TS}
	if h.Seq > 0 {
		if sum, ok := leadingSum(h.Data); ok {
			f.orderSum, f.hasSum = sum, true
		} else {
			f.orderSum, f.hasSum = decodeSum(h.Data)
		}
	}
	return f, true
}

func eventName(b []byte) string {
	for _, e := range knownEvents {
		if string(b) == e {
			return e
		}
	}
	return string(b)
}

// number splits a JSON number's characters off the front of b.
func number(b []byte) (n, rest []byte) {
	i := 0
	for i < len(b) && (b[i] == '-' || b[i] >= '0' && b[i] <= '9') {
		i++
	}
	return b[:i], b[i:]
}

// parseUint and parseInt accept JSON integers only (no leading zero, no
// sign on the unsigned, no fraction or exponent), in range.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || b[0] == '-' || len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	return n, err == nil
}

func parseInt(b []byte) (int64, bool) {
	digits := b
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || digits[0] == '-' || len(digits) > 1 && digits[0] == '0' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

// leadingSum reads orderSum from a valid data object that starts with it as
// an integer, as wire.Encode writes order data, when no other member can
// also be orderSum to encoding/json (which matches member names without
// regard to case, Unicode folding included, and lets the last one win):
// the name appears once in any ASCII case, and there is no \u escape and no
// long s (U+017F, which folds to 's').
func leadingSum(data []byte) (int64, bool) {
	rest, ok := bytes.CutPrefix(data, []byte(`{"orderSum":`))
	if !ok {
		return 0, false
	}
	n, rest := number(rest)
	if len(rest) == 0 || rest[0] != ',' && rest[0] != '}' {
		return 0, false
	}
	sum, ok := parseInt(n)
	if !ok || foldCount(data, "ordersum") != 1 || bytes.Contains(data, []byte(`\u`)) || bytes.Contains(data, []byte("ſ")) {
		return 0, false
	}
	return sum, true
}

// foldCount counts the occurrences of word (lower-case ASCII) in b in any
// ASCII case.
func foldCount(b []byte, word string) int {
	n := 0
	for i := 0; i+len(word) <= len(b); i++ {
		if b[i]|0x20 != word[0] {
			continue
		}
		j := 1
		for j < len(word) && b[i+j]|0x20 == word[j] {
			j++
		}
		if j == len(word) {
			n++
		}
	}
	return n
}

// entry is what a socket's queue gets for f.
func (f frame) entry() sendq.Entry {
	return sendq.Entry{Data: f.data, TS: f.ts, Seq: f.seq, Head: f.head}
}
