package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"

	"orderpush/pkg/wire"
)

// orderWithAlerts is the body of GET /orders/{orderNo}: the order object
// and its "alerts" (PROTOCOL.md "Receipts and attention"). Only this
// endpoint carries alerts; frames and lists do not.
type orderWithAlerts struct {
	order  wire.Order
	alerts []wire.Alert
}

// MarshalJSON appends "alerts" to the order's own JSON, which has its own
// marshaller (an embedded wire.Order would hide any added field).
func (v orderWithAlerts) MarshalJSON() ([]byte, error) {
	o, err := json.Marshal(v.order)
	if err != nil {
		return nil, err
	}
	al, err := json.Marshal(v.alerts)
	if err != nil {
		return nil, err
	}
	o = bytes.TrimSpace(o)
	if len(o) < 2 || o[len(o)-1] != '}' {
		return nil, fmt.Errorf("order JSON is not an object: %s", o)
	}
	out := append(o[:len(o)-1:len(o)-1], `,"alerts":`...)
	out = append(out, al...)
	return append(out, '}'), nil
}
