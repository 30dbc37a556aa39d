package hub

import (
	"encoding/json"
	"errors"
	"fmt"

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
func parseFrame(b []byte) (frame, error) {
	var v wire.Frame
	if err := json.Unmarshal(b, &v); err != nil {
		return frame{}, fmt.Errorf("%w: %v", wire.ErrBadFrame, err)
	}
	if v.Event == "" {
		return frame{}, fmt.Errorf("%w: %w", wire.ErrBadFrame, errNoEvent)
	}
	f := frame{data: b, head: &v, seq: v.Seq, ts: v.TS}
	if v.Seq > 0 {
		var d struct {
			OrderSum *int64 `json:"orderSum"`
		}
		if json.Unmarshal(v.Data, &d) == nil && d.OrderSum != nil {
			f.orderSum, f.hasSum = *d.OrderSum, true
		}
	}
	return f, nil
}

// entry is what a socket's queue gets for f.
func (f frame) entry() sendq.Entry {
	return sendq.Entry{Data: f.data, TS: f.ts, Seq: f.seq, Head: f.head}
}
