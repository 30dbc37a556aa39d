package loadgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// socket.io over Engine.IO's websocket transport, as much as the load
// generator needs (gateway/README.md, "socket.io"): the CONNECT after the
// open packet, pongs for the server's pings, and each merchant event turned
// back into the frame it came from, so the rest of the fleet code is the
// same for both transports.

// sioConnect sends CONNECT after the open packet and returns the hello
// frame.
func sioConnect(c *wsConn, open []byte) ([]byte, error) {
	if len(open) == 0 || open[0] != '0' {
		return nil, fmt.Errorf("socket.io: no open packet: %.80q", open)
	}
	if err := c.WriteText([]byte("40")); err != nil {
		return nil, err
	}
	for {
		msg, err := c.ReadMessage()
		if err != nil {
			return nil, err
		}
		if bytes.HasPrefix(msg, []byte("44")) {
			return nil, fmt.Errorf("socket.io: connect refused: %.200s", msg[2:])
		}
		fr, err := sioMessage(c, msg)
		if err != nil {
			return nil, err
		}
		if fr != nil {
			return fr, nil
		}
	}
}

// sioMessage answers a ping and returns the frame an EVENT carries, or nil
// for anything else.
func sioMessage(c *wsConn, msg []byte) ([]byte, error) {
	switch {
	case len(msg) == 1 && msg[0] == '2':
		return nil, c.WriteText([]byte("3"))
	case !bytes.HasPrefix(msg, []byte("42[")):
		return nil, nil // CONNECT answer, acks, noops
	}
	var args []json.RawMessage
	if err := json.Unmarshal(msg[2:], &args); err != nil || len(args) < 2 {
		return nil, fmt.Errorf("socket.io: bad event %.80q", msg)
	}
	var name string
	if err := json.Unmarshal(args[0], &name); err != nil {
		return nil, errors.New("socket.io: event without a name")
	}
	rest := bytes.TrimSpace(args[1])
	if len(rest) < 2 || rest[0] != '{' {
		return nil, fmt.Errorf("socket.io: event argument is not an object: %.80q", msg)
	}
	// {"event":name, <the argument's fields>}: the frame again.
	fr := make([]byte, 0, len(rest)+len(name)+12)
	fr = append(fr, `{"event":`...)
	fr = append(fr, args[0]...)
	if len(rest) > 2 {
		fr = append(fr, ',')
	}
	return append(fr, rest[1:]...), nil
}
