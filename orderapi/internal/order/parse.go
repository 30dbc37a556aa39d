package order

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strconv"
	"unicode/utf8"

	"orderpush/pkg/wire"
)

// CreateRequest is a parsed POST /orders body.
type CreateRequest struct {
	MerchantID string
	Date       string
	Price      wire.Cents
	// UserID is set, and HasUserID true, when the body names a user (only
	// a service token may).
	UserID    string
	HasUserID bool
}

// ParseCreate parses and validates a POST /orders body strictly: one JSON
// object, no trailing data, no unknown or repeated fields, every field of
// the right JSON type and well-formed. Errors are *Error with code
// invalid_json or invalid_field; the message names the field.
func ParseCreate(body []byte) (CreateRequest, error) {
	fields, err := decodeObject(body, "merchantId", "date", "price", "userId")
	if err != nil {
		return CreateRequest{}, err
	}
	var r CreateRequest
	if r.MerchantID, err = requiredString(fields, "merchantId"); err != nil {
		return CreateRequest{}, err
	}
	if !wire.ValidMerchantID(r.MerchantID) {
		return CreateRequest{}, invalidField("merchantId", "must be 1-64 characters of A-Z a-z 0-9 _ -")
	}
	if r.Date, err = requiredString(fields, "date"); err != nil {
		return CreateRequest{}, err
	}
	if !wire.ValidDate(r.Date) {
		return CreateRequest{}, invalidField("date", "must be a real calendar date YYYY-MM-DD, got %s", strconv.Quote(clip(r.Date)))
	}
	if r.Price, err = price(fields); err != nil {
		return CreateRequest{}, err
	}
	if _, ok := fields.get("userId"); ok {
		if r.UserID, err = requiredString(fields, "userId"); err != nil {
			return CreateRequest{}, err
		}
		if !wire.ValidUserID(r.UserID) {
			return CreateRequest{}, invalidField("userId", "must be 1-32 characters of A-Z a-z 0-9 _ -")
		}
		r.HasUserID = true
	}
	return r, nil
}

// NoticeRequest is a parsed POST /connections/{connId}/notice body.
type NoticeRequest struct {
	Msg string
}

// MaxNoticeChars bounds a notice message, in characters.
const MaxNoticeChars = 1000

// ParseNotice parses {"msg":"..."} with 1-1000 characters.
func ParseNotice(body []byte) (NoticeRequest, error) {
	fields, err := decodeObject(body, "msg")
	if err != nil {
		return NoticeRequest{}, err
	}
	msg, err := requiredString(fields, "msg")
	if err != nil {
		return NoticeRequest{}, err
	}
	if n := utf8.RuneCountInString(msg); n < 1 || n > MaxNoticeChars {
		return NoticeRequest{}, invalidField("msg", "must be 1-%d characters, got %d", MaxNoticeChars, n)
	}
	return NoticeRequest{Msg: msg}, nil
}

// member is one member of a body's object, its value as raw JSON.
type member struct {
	key string
	raw []byte
}

// members are a body's object in the order sent. Bodies have a handful,
// so a scan beats building a map.
type members []member

func (ms members) get(key string) ([]byte, bool) {
	for _, m := range ms {
		if m.key == key {
			return m.raw, true
		}
	}
	return nil, false
}

// decodeObject reads body as exactly one JSON object whose keys are all in
// known and appear once. Syntax problems are reported before field
// problems, so a broken body is always invalid_json.
func decodeObject(body []byte, known ...string) (members, error) {
	if ms, ok := scanFlat(body, known); ok {
		return ms, nil
	}
	return decodeAny(body, known)
}

// decodeAny is decodeObject for any body, with encoding/json's message for
// a syntax error.
func decodeAny(body []byte, known []string) (members, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, invalidJSON("request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil {
		return nil, invalidJSON("request body is not valid JSON: %v", err)
	} else if tok != json.Delim('{') {
		return nil, invalidJSON("request body must be a JSON object")
	}
	var ms members
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, invalidJSON("request body is not valid JSON: %v", err)
		}
		key, _ := tok.(string) // inside an object the decoder yields only string keys
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, invalidJSON("request body is not valid JSON: %v", err)
		}
		ms = append(ms, member{key, raw})
	}
	if _, err := dec.Token(); err != nil {
		return nil, invalidJSON("request body is not valid JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, invalidJSON("unexpected data after the JSON object")
	}
	for i, m := range ms {
		if !slices.Contains(known, m.key) {
			return nil, invalidField(strconv.Quote(clip(m.key)), "unknown field")
		}
		if _, dup := ms[:i].get(m.key); dup {
			return nil, invalidField(m.key, "given twice")
		}
	}
	return ms, nil
}

func requiredString(fields members, name string) (string, error) {
	raw, ok := fields.get(name)
	if !ok {
		return "", invalidField(name, "required")
	}
	if len(raw) == 0 || raw[0] != '"' {
		return "", invalidField(name, "must be a JSON string")
	}
	if end, ok := scanPlainString(raw, 0); ok && end == len(raw) {
		return string(raw[1 : end-1]), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", invalidField(name, "must be a JSON string")
	}
	return s, nil
}

func price(fields members) (wire.Cents, error) {
	raw, ok := fields.get("price")
	if !ok {
		return 0, invalidField("price", "required")
	}
	if len(raw) == 0 || !(raw[0] == '-' || '0' <= raw[0] && raw[0] <= '9') {
		return 0, invalidField("price", "must be a JSON number")
	}
	c, err := wire.ParseCents(raw)
	if err != nil {
		return 0, invalidField("price", "must be a number from 0 to %s with at most 2 decimal places, got %s",
			string(mustJSON(wire.MaxCents)), clip(string(raw)))
	}
	return c, nil
}

func mustJSON(c wire.Cents) []byte {
	b, _ := c.MarshalJSON()
	return b
}

// clip shortens what the client sent before it is echoed in a message.
func clip(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	for i := max; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "..."
		}
	}
	return s[:max] + "..."
}
