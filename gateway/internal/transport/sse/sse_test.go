package sse

import (
	"bytes"
	"encoding/json"
	"testing"

	"orderpush/gateway/internal/session/sendq"
	"orderpush/pkg/wire"
)

func TestAppendEvent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ frame, want string }{
		{`{"event":"order","seq":7,"ts":1,"data":{"orderSum":2}}`, "id: 7\nevent: order\ndata: {\"event\":\"order\",\"seq\":7,\"ts\":1,\"data\":{\"orderSum\":2}}\n\n"},
		{`{"event":"hello","data":{"seq":5}}`, "event: hello\ndata: {\"event\":\"hello\",\"data\":{\"seq\":5}}\n\n"},
		{"{\"event\":\"notice\",\r\n \"data\":{}}\n", "event: notice\ndata: {\"event\":\"notice\",\ndata:  \"data\":{}}\n\n"},
		{`{"event":"a b","seq":3}`, "id: 3\ndata: {\"event\":\"a b\",\"seq\":3}\n\n"},
		{`not json`, "data: not json\n\n"},
	} {
		var b bytes.Buffer
		appendEvent(&b, sendq.Entry{Data: []byte(tc.frame)})
		if got := b.String(); got != tc.want {
			t.Errorf("appendEvent(%q)\n got %q\nwant %q", tc.frame, got, tc.want)
		}
		// With the head the hub or the session hands on: the same event.
		var h wire.Frame
		if json.Unmarshal([]byte(tc.frame), &h) != nil {
			continue
		}
		b.Reset()
		appendEvent(&b, sendq.Entry{Data: []byte(tc.frame), Seq: 5, Head: &h})
		if got := b.String(); got != tc.want {
			t.Errorf("with head: appendEvent(%q)\n got %q\nwant %q", tc.frame, got, tc.want)
		}
	}
}
