package loadgen

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sseEvent is one dispatched event: its data, event type and last id.
type sseEvent struct{ Data, Event, ID string }

// readSSE runs the streaming reader over in with the smallest buffer
// bufio allows, so lines cross buffer boundaries; it returns the events
// and the error that ended the stream.
func readSSE(in []byte) ([]sseEvent, error) {
	c := &sseConn{body: bufio.NewReaderSize(bytes.NewReader(in), 16)}
	var out []sseEvent
	for {
		data, err := c.ReadMessage()
		if err != nil {
			return out, err
		}
		out = append(out, sseEvent{string(data), string(c.p.event), string(c.p.id)})
	}
}

// refSSE is the event stream format read the plain way, all at once:
// the reference the streaming reader must agree with.
func refSSE(in string) []sseEvent {
	var out []sseEvent
	var data []string
	var event, id string
	lines := strings.Split(in, "\n")
	for _, l := range lines[:len(lines)-1] { // the last piece has no line end
		l = strings.TrimSuffix(l, "\r")
		switch {
		case l == "":
			if data != nil {
				out = append(out, sseEvent{strings.Join(data, "\n"), event, id})
			}
			data, event = nil, ""
		case l[0] == ':':
		default:
			field, value, found := strings.Cut(l, ":")
			if found {
				value = strings.TrimPrefix(value, " ")
			}
			switch field {
			case "data":
				data = append(data, value)
			case "event":
				event = value
			case "id":
				if !strings.Contains(value, "\x00") {
					id = value
				}
			}
		}
	}
	return out
}

func TestSSEEvents(t *testing.T) {
	t.Parallel()
	order := OrderFrame("m1", 42, time.Now())
	stream := "retry: 1000\n\n" +
		"event: hello\ndata: {\"event\":\"hello\",\"data\":{\"seq\":41}}\n\n" +
		": hb\n\n" +
		"id: 42\nevent: order\ndata: " + string(order) + "\n\n" +
		"data:a\r\ndata: b\r\nevent:x\r\n\r\n" + // CRLF, no space after the colon, two data lines
		"id: 43\n\n" + // no data: not dispatched, but the id is kept
		"data\n\n" + // a field without a colon: empty data
		": close going_away going away\n"
	got, err := readSSE([]byte(stream))
	want := []sseEvent{
		{`{"event":"hello","data":{"seq":41}}`, "hello", ""},
		{string(order), "order", "42"},
		{"a\nb", "x", "42"},
		{"", "", "43"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events\n got %q\nwant %q", got, want)
	}
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 1001 || ce.Reason != "going away" {
		t.Fatalf("end of stream: %v, want close 1001 going away", err)
	}
	if h, err := ParseHead([]byte(got[1].Data)); err != nil || h.Seq != 42 {
		t.Fatalf("the order event's data is not the frame: %+v %v", h, err)
	}
	// A stream that ends without the closing comment is a plain EOF; one
	// cut inside a line is unexpected.
	if _, err := readSSE([]byte("data: x\n\n")); err != io.EOF {
		t.Fatalf("end without a closing comment: %v, want EOF", err)
	}
	if _, err := readSSE([]byte("data: x")); err != io.ErrUnexpectedEOF {
		t.Fatalf("end inside a line: %v, want unexpected EOF", err)
	}
	long := "data: " + strings.Repeat("x", 5000) + "\n\n"
	if got, err := readSSE([]byte(long)); len(got) != 1 || len(got[0].Data) != 5000 || err != io.EOF {
		t.Fatalf("a line over the read buffer: %d events, %v", len(got), err)
	}
}

// FuzzSSEEvents: the streaming reader, across buffer boundaries, dispatches
// what the whole-input reading of the format does.
func FuzzSSEEvents(f *testing.F) {
	f.Add([]byte("id: 1\nevent: order\ndata: {\"event\":\"order\",\"seq\":1}\n\n: hb\n\n"))
	f.Add([]byte("data:a\r\ndata\r\n\r\nid: 2\x00\n\n"))
	f.Add([]byte("data: " + strings.Repeat("y", 40) + "\n\n: close policy token expired\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if bytes.ContainsRune(in, '\r') && bytes.Contains(bytes.ReplaceAll(in, []byte("\r\n"), nil), []byte("\r")) {
			return // a lone CR as a line end is not supported
		}
		got, err := readSSE(in)
		if err != io.EOF && err != io.ErrUnexpectedEOF {
			var ce *CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("stream ended with %v", err)
			}
		}
		if want := refSSE(string(in)); !reflect.DeepEqual(got, want) && (len(got) > 0 || len(want) > 0) {
			t.Fatalf("%q:\n got %q\nwant %q", in, got, want)
		}
	})
}

func TestDialSSE(t *testing.T) {
	t.Parallel()
	order := OrderFrame("m1", 1, time.Now())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("token") != "good" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"code":"unauthorized","message":"no"}}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		fmt.Fprintf(w, "retry: 1000\n\n")
		w.(http.Flusher).Flush()
		fmt.Fprintf(w, ": hb\n\nid: 1\nevent: order\ndata: %s\n\n", order)
		w.(http.Flusher).Flush()
		fmt.Fprintf(w, ": close try_again_later slow consumer\n\n")
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL + "/sse?token=good")
	c, err := dialSSE(t.Context(), &net.Dialer{}, u)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg, err := c.ReadMessage()
	if err != nil || !bytes.Equal(msg, order) {
		t.Fatalf("first event %q %v, want the order frame", msg, err)
	}
	var ce *CloseError
	if _, err := c.ReadMessage(); !errors.As(err, &ce) || ce.Code != 1013 {
		t.Fatalf("end of stream: %v, want close 1013", err)
	}
	u, _ = url.Parse(srv.URL + "/sse?token=bad")
	var de *DialError
	if _, err := dialSSE(t.Context(), &net.Dialer{}, u); !errors.As(err, &de) || de.Status != 401 || de.Code != "unauthorized" {
		t.Fatalf("refused stream: %v", err)
	}
}

func TestSIOEventFrame(t *testing.T) {
	t.Parallel()
	order := OrderFrame("m1", 7, time.Now())
	var o struct {
		Seq  uint64          `json:"seq"`
		TS   int64           `json:"ts"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(order, &o); err != nil {
		t.Fatal(err)
	}
	// The gateway's EVENT for the order frame (PROTOCOL.md "socket.io").
	arg := fmt.Sprintf(`{"seq":%d,"ts":%d,"data":%s}`, o.Seq, o.TS, o.Data)
	for _, c := range []struct {
		payload, want string
	}{
		{`["order",` + arg + `,"7"]`, string(order)},
		{`["order",` + arg + `]`, string(order)},
		{`["hello",{"data":{"connId":"c","seq":5}},"5"]`, `{"event":"hello","data":{"connId":"c","seq":5}}`},
		{`["pong",{}]`, `{"event":"pong"}`},
		{`["x",{"s":"},\"9\"]"},"9"]`, `{"event":"x","s":"},\"9\"]"}`},
		{`["ord\u0065r",{"seq":1}]`, `{"event":"ord\u0065r","seq":1}`}, // escaped name: decoded in full
		{`["a",{},{"b":1}]`, `{"event":"a"}`},                          // more arguments: the first counts
		{`[ "a" , { "b" : 1 } ]`, `{"event":"a", "b" : 1 }`},
		{`["a"]`, `{"event":"a"}`},
		{`[1,{}]`, ""},
		{`["a",1]`, ""},
		{`["a",{}`, ""},
		{`not json`, ""},
	} {
		got, err := sioEventFrame(nil, []byte(c.payload))
		if c.want == "" {
			if err == nil {
				t.Errorf("%s: got %s, want an error", c.payload, got)
			}
			continue
		}
		if err != nil || string(got) != c.want {
			t.Errorf("%s:\n got %s %v\nwant %s", c.payload, got, err, c.want)
		}
	}
	if h, err := ParseHead(must(sioEventFrame(nil, []byte(`["order",`+arg+`,"7"]`)))); err != nil || h != (Head{Event: "order", Seq: 7}) {
		t.Fatalf("ParseHead of the rebuilt frame: %+v %v", h, err)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// FuzzSIOEventFrame: never panics; whatever the fast path accepts that is
// valid JSON, the full decode turns into the same frame.
func FuzzSIOEventFrame(f *testing.F) {
	f.Add([]byte(`["order",{"seq":7,"ts":1,"data":{"orderSum":2}},"7"]`))
	f.Add([]byte(`["hello",{"data":{"seq":"x"}}]`))
	f.Add([]byte(`["a",{"s":"}\\"},"1"]`))
	f.Add([]byte(`["a",{},{}]`))
	f.Fuzz(func(t *testing.T, p []byte) {
		fr, err := sioEventFrame(nil, p)
		if err == nil && json.Valid(p) && !json.Valid(fr) {
			t.Fatalf("%q gave the invalid frame %q", p, fr)
		}
		if _, _, fast := sioEventFast(p); !fast || !json.Valid(p) {
			return
		}
		name, arg, err := sioEventSlow(p)
		if err != nil {
			t.Fatalf("%q: the fast path accepts what a full decode refuses: %v", p, err)
		}
		// The frame is {"event":<name>, <arg's members>}: decoded, a member
		// "event" of the argument wins, as the later duplicate.
		var ev string
		var want map[string]any
		if json.Unmarshal(name, &ev) != nil || json.Unmarshal(arg, &want) != nil {
			t.Fatalf("%q: the full decode's parts do not decode", p)
		}
		if _, ok := want["event"]; !ok {
			want["event"] = ev
		}
		var got any
		if err := json.Unmarshal(fr, &got); err != nil || !reflect.DeepEqual(got, any(want)) {
			t.Fatalf("%q:\n fast %s\n full %v", p, fr, want)
		}
	})
}

func TestWriteTransports(t *testing.T) {
	t.Parallel()
	var ms []Metric
	for run, v := range []float64{10, 12, 11} {
		ms = append(ms,
			Metric{Scenario: ScenarioIdle, Run: run, Name: "rss_per_socket", Value: v},
			Metric{Scenario: ScenarioIdle, Variant: TransportSSE, Run: run, Name: "rss_per_socket", Value: 2 * v},
			Metric{Scenario: ScenarioFanout, Variant: "batch", Run: run, Name: "deliveries_per_s", Value: 1000},
			Metric{Scenario: ScenarioFanout, Variant: TransportSSE, Run: run, Name: "deliveries_per_s", Value: 250})
	}
	var b strings.Builder
	WriteTransports(&b, Aggregate(ms), []string{TransportWS, TransportSSE}, true)
	line := func(label string) string {
		for _, l := range strings.Split(b.String(), "\n") {
			if l = strings.TrimSpace(l); strings.HasPrefix(l, label) {
				return strings.Join(strings.Fields(l[len(label):]), " ")
			}
		}
		return ""
	}
	if l := line("idle: RSS per socket (KiB)"); l != "11 10..12 1.00x 22 20..24 2.00x" {
		t.Errorf("idle RSS line %q", l)
	}
	if l := line("fanout: deliveries/s"); l != "1000 1000..1000 1.00x 250 250..250 0.25x" {
		t.Errorf("fan-out line %q", l)
	}
	if l := line("latency (redis): p99 (ms)"); l != "- -" {
		t.Errorf("a figure no transport has should print as -: %q", l)
	}
	if t.Failed() {
		t.Log(b.String())
	}
}
