package hub

import (
	"encoding/json"
	"errors"
	"fmt"

	"orderpush/pkg/wire"
)

// frame is a server frame as received from Redis or a back-fill, with what
// the hub routes by. data is forwarded to sockets unchanged.
type frame struct {
	data     []byte
	seq      uint64
	ts       int64
	orderSum int64
	hasSum   bool
}

var errNoEvent = errors.New("no event")

// parseFrame reads a frame published on a merchant channel: a JSON object
// with an event name, and for merchant events its seq, ts and data.orderSum.
// Anything else is rejected so a gateway never forwards garbage to sockets.
func parseFrame(b []byte) (frame, error) {
	var v struct {
		Event string          `json:"event"`
		Seq   uint64          `json:"seq"`
		TS    int64           `json:"ts"`
		Data  json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return frame{}, fmt.Errorf("%w: %v", wire.ErrBadFrame, err)
	}
	if v.Event == "" {
		return frame{}, fmt.Errorf("%w: %w", wire.ErrBadFrame, errNoEvent)
	}
	f := frame{data: b, seq: v.Seq, ts: v.TS}
	if v.Seq > 0 && len(v.Data) > 0 && v.Data[0] == '{' {
		var d struct {
			OrderSum *int64 `json:"orderSum"`
		}
		if json.Unmarshal(v.Data, &d) == nil && d.OrderSum != nil {
			f.orderSum, f.hasSum = *d.OrderSum, true
		}
	}
	return f, nil
}
