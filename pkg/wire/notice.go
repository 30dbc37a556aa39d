package wire

import (
	"encoding/json"
	"fmt"
)

// Notice is the envelope on a gateway replica's own channel
// (rediskey.NodeChannel) that asks it to queue Frame for one of its
// connections: the order API's POST /connections/{connId}/notice publishes
// it to the replica presence names (PROTOCOL.md, "Order API").
type Notice struct {
	ConnID string          `json:"connId"`
	Frame  json.RawMessage `json:"frame"`
}

// ParseNotice reads a Notice as received on a node channel. It needs a
// connection id and a frame a socket may receive (a JSON object with an
// event name), so a replica never forwards garbage. Errors wrap
// ErrBadFrame.
func ParseNotice(b []byte) (Notice, error) {
	var n Notice
	if err := json.Unmarshal(b, &n); err != nil {
		return Notice{}, fmt.Errorf("%w: notice: %v", ErrBadFrame, err)
	}
	if n.ConnID == "" {
		return Notice{}, fmt.Errorf("%w: notice without connId", ErrBadFrame)
	}
	if _, err := ParseHead(n.Frame); err != nil {
		return Notice{}, fmt.Errorf("notice frame: %w", err)
	}
	return n, nil
}
