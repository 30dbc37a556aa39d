package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Event names of server frames (PROTOCOL.md, "Merchant socket").
const (
	EventHello          = "hello"
	EventOrder          = "order"
	EventOrderProcessed = "order.processed"
	// EventOrderSeen is the first seen of an order (version 1.1): data
	// orderSum and order, sequenced like order.
	EventOrderSeen = "order.seen"
	EventNotice    = "notice"
	EventResync    = "resync"
	EventPong      = "pong"
	EventError     = "error"
)

// Event names of client frames.
const (
	EventPing    = "ping"
	EventProcess = "process"
	// EventAck and EventSeen are the receipts (version 1.1, PROTOCOL.md
	// "Receipts and attention").
	EventAck  = "ack"
	EventSeen = "seen"
)

// MaxAckSeq bounds an ack's seq: any seq a merchant can reach, and exact
// in a JSON number read by any client (2^53).
const MaxAckSeq = 1 << 53

// NewOrderMsg is the message shown to a merchant for a new order, as the
// original design worded it.
const NewOrderMsg = "您收到一条新订单，赶快去处理吧"

// MaxFrameSize is the largest client frame a gateway reads; a larger one
// closes the socket with 1009.
const MaxFrameSize = 64 << 10

// Frame is one server frame. Seq is zero for frames outside the merchant's
// stream (hello, notice, resync, pong, error) and is then omitted. TS is the
// publish time in Unix milliseconds, set by publishers for lag metrics.
type Frame struct {
	Event string          `json:"event"`
	Seq   uint64          `json:"seq,omitempty"`
	TS    int64           `json:"ts,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

// HelloData is the data of hello and resync frames.
type HelloData struct {
	ConnID     string `json:"connId"`
	MerchantID string `json:"merchantId"`
	Node       string `json:"node"`
	Seq        uint64 `json:"seq"`
	OrderSum   int64  `json:"orderSum"`
}

// OrderData is the data of order, order.processed and order.seen frames. Msg is set only
// on order frames.
type OrderData struct {
	OrderSum int64  `json:"orderSum"`
	Msg      string `json:"msg,omitempty"`
	Order    Order  `json:"order"`
}

// NoticeData is the data of a notice frame.
type NoticeData struct {
	Msg string `json:"msg"`
}

// Encode returns the JSON encoding of a frame whose data is v.
func Encode(event string, seq uint64, ts int64, v any) ([]byte, error) {
	data, err := Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s data: %w", event, err)
	}
	return Marshal(Frame{Event: event, Seq: seq, TS: ts, Data: data})
}

// MustEncode is Encode for values that always marshal (the types of this
// package); it panics only on a programming error.
func MustEncode(event string, seq uint64, ts int64, v any) []byte {
	b, err := Encode(event, seq, ts, v)
	if err != nil {
		panic(err)
	}
	return b
}

// Head is what a gateway needs to route a frame it did not build: the event
// name and its place in the merchant's stream.
type Head struct {
	Event string `json:"event"`
	Seq   uint64 `json:"seq"`
	TS    int64  `json:"ts"`
}

// ErrBadFrame is wrapped by every frame parsing error.
var ErrBadFrame = errors.New("bad frame")

// ParseHead reads the head of a server frame as published on a merchant
// channel. It rejects anything that is not a JSON object with an event name,
// so a gateway never forwards garbage to sockets.
func ParseHead(b []byte) (Head, error) {
	var h Head
	if err := json.Unmarshal(b, &h); err != nil {
		return Head{}, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	if h.Event == "" {
		return Head{}, fmt.Errorf("%w: no event", ErrBadFrame)
	}
	return h, nil
}

// ClientFrame is a frame a merchant socket sends.
type ClientFrame struct {
	Event string
	// OrderNo is set for process and seen frames.
	OrderNo string
	// Seq is set for ack frames: at least 1, at most MaxAckSeq.
	Seq uint64
}

// ParseClient parses and validates a client frame: ping; process or seen
// with a well-formed order number; ack with a positive integer seq. Errors
// wrap ErrBadFrame and are meant for the client's error frame.
func ParseClient(b []byte) (ClientFrame, error) {
	var f struct {
		Event string          `json:"event"`
		Seq   json.RawMessage `json:"seq"`
		Data  json.RawMessage `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return ClientFrame{}, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	if dec.More() {
		return ClientFrame{}, fmt.Errorf("%w: trailing data", ErrBadFrame)
	}
	if f.Seq != nil && f.Event != EventAck && f.Event != "" {
		return ClientFrame{}, fmt.Errorf("%w: only ack carries seq", ErrBadFrame)
	}
	switch f.Event {
	case EventPing:
		return ClientFrame{Event: EventPing}, nil
	case EventProcess, EventSeen:
		no, err := parseOrderNoData(f.Event, f.Data)
		if err != nil {
			return ClientFrame{}, err
		}
		return ClientFrame{Event: f.Event, OrderNo: no}, nil
	case EventAck:
		if f.Data != nil {
			return ClientFrame{}, fmt.Errorf("%w: ack carries no data, only seq: {\"event\":\"ack\",\"seq\":N}", ErrBadFrame)
		}
		seq, err := parseAckSeq(f.Seq)
		if err != nil {
			return ClientFrame{}, err
		}
		return ClientFrame{Event: EventAck, Seq: seq}, nil
	case "":
		return ClientFrame{}, fmt.Errorf("%w: no event", ErrBadFrame)
	default:
		return ClientFrame{}, fmt.Errorf("%w: unknown event %s", ErrBadFrame, strconv.Quote(f.Event))
	}
}

// parseOrderNoData reads the data of process and seen: exactly
// {"orderNo":"..."} with a well-formed order number.
func parseOrderNoData(event string, data json.RawMessage) (string, error) {
	var d struct {
		OrderNo string `json:"orderNo"`
	}
	dd := json.NewDecoder(bytes.NewReader(data))
	dd.DisallowUnknownFields()
	if len(data) == 0 || dd.Decode(&d) != nil {
		return "", fmt.Errorf("%w: %s needs data {\"orderNo\":\"...\"}", ErrBadFrame, event)
	}
	if !ValidOrderNo(d.OrderNo) {
		return "", fmt.Errorf("%w: malformed orderNo", ErrBadFrame)
	}
	return d.OrderNo, nil
}

// parseAckSeq reads an ack's seq: a JSON integer from 1 to MaxAckSeq in
// plain digits (no sign, fraction, exponent or leading zero), so every
// client's number means the same seq.
func parseAckSeq(raw json.RawMessage) (uint64, error) {
	if raw == nil {
		return 0, fmt.Errorf("%w: ack needs seq: {\"event\":\"ack\",\"seq\":N}", ErrBadFrame)
	}
	s := string(raw)
	if s == "" || len(s) > 16 || s[0] == '0' || strings.Trim(s, "0123456789") != "" {
		return 0, errAckSeq
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > MaxAckSeq {
		return 0, errAckSeq
	}
	return n, nil
}

var errAckSeq = fmt.Errorf("%w: ack seq must be an integer from 1 to %d", ErrBadFrame, uint64(MaxAckSeq))
