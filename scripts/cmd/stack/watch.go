package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/coder/websocket"
)

// watch connects to a merchant socket and prints every frame on its own
// line until the socket closes or the context ends.
func watch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tok := fs.String("token", "", "merchant token, sent as Authorization: Bearer (or put ?token= in the URL)")
	since := fs.Int64("since", -1, "ask for the events after this seq (replay)")
	batch := fs.Bool("batch", false, "ask for batched frames (?batch=1); printed one frame a line anyway")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./scripts/cmd/stack watch [-token JWT] [-since N] [-batch] ws://HOST:PORT/ws")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("watch: want exactly one WebSocket URL")
	}
	u, err := url.Parse(fs.Arg(0))
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") {
		return fmt.Errorf("watch: %q is not a ws:// or wss:// URL", fs.Arg(0))
	}
	q := u.Query()
	if *since >= 0 {
		q.Set("since", strconv.FormatInt(*since, 10))
	}
	if *batch {
		q.Set("batch", "1")
	}
	u.RawQuery = q.Encode()
	h := http.Header{}
	if *tok != "" {
		h.Set("Authorization", "Bearer "+*tok)
	}
	c, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
			return fmt.Errorf("watch: %s: %s", resp.Status, body)
		}
		return fmt.Errorf("watch: %w", err)
	}
	defer c.CloseNow()
	c.SetReadLimit(16 << 20)
	for {
		_, msg, err := c.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				_ = c.Close(websocket.StatusNormalClosure, "bye")
				return nil
			}
			if st := websocket.CloseStatus(err); st != -1 {
				return fmt.Errorf("watch: socket closed: %d %s", st, err)
			}
			return fmt.Errorf("watch: %w", err)
		}
		for _, f := range splitFrames(msg) {
			if _, err := fmt.Fprintf(stdout, "%s\n", f); err != nil {
				return err
			}
		}
	}
}

// splitFrames splits a batched message (frames separated by '\n',
// PROTOCOL.md "Merchant socket", ?batch=1) into frames.
func splitFrames(msg []byte) [][]byte {
	var out [][]byte
	for _, f := range bytes.Split(msg, []byte{'\n'}) {
		if len(f) > 0 {
			out = append(out, f)
		}
	}
	return out
}
