package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

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
// It decodes once; a data member that is not the usual object (a frame
// outside the merchant's stream may carry anything there) is accepted, with
// the head then read on its own to be sure of it.
func parseFrame(b []byte) (frame, error) {
	var v struct {
		Event string `json:"event"`
		Seq   uint64 `json:"seq"`
		TS    int64  `json:"ts"`
		Data  struct {
			OrderSum *int64 `json:"orderSum"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) || !strings.HasPrefix(te.Field, "data") {
			return frame{}, fmt.Errorf("%w: %v", wire.ErrBadFrame, err)
		}
		h, err := wire.ParseHead(b)
		if err != nil {
			return frame{}, err
		}
		return frame{data: b, seq: h.Seq, ts: h.TS}, nil
	}
	if v.Event == "" {
		return frame{}, fmt.Errorf("%w: %w", wire.ErrBadFrame, errNoEvent)
	}
	f := frame{data: b, seq: v.Seq, ts: v.TS}
	if v.Seq > 0 && v.Data.OrderSum != nil {
		f.orderSum, f.hasSum = *v.Data.OrderSum, true
	}
	return f, nil
}
