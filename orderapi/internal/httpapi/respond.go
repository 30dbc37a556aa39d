package httpapi

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"

	"github.com/labstack/echo/v4"

	"orderpush/pkg/wire"
)

// maxPooledBuf keeps the occasional large answer (an event page) from
// pinning its buffer in the pool.
const maxPooledBuf = 64 << 10

// bufPool holds the buffers answers are encoded into, one per answer being
// written.
type bufPool struct{ p sync.Pool }

func (p *bufPool) get() *bytes.Buffer {
	if b, ok := p.p.Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

func (p *bufPool) put(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuf {
		p.p.Put(b)
	}
}

// writeJSON encodes v into a pooled buffer and sends it with its
// Content-Length in one Write. Without the length, net/http would answer
// chunked and write the closing chunk with a second system call, and a
// failure to encode would leave a half-sent body. The body is compact JSON
// without HTML escaping, like the wire frames, ending in a newline.
func (a *api) writeJSON(c echo.Context, status int, v any) error {
	buf := a.bufs.get()
	defer a.bufs.put(buf)
	if err := encodeJSON(buf, v); err != nil {
		return err
	}
	return writeBody(c, status, buf.Bytes())
}

func encodeJSON(buf *bytes.Buffer, v any) error {
	if o, ok := v.(wire.Order); ok {
		// Its MarshalJSON writes compact JSON already; an Encoder would
		// reach it through reflection and scan the result once more.
		b, err := o.MarshalJSON()
		if err != nil {
			return err
		}
		buf.Write(b)
		buf.WriteByte('\n')
		return nil
	}
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// writeBody sends body, a JSON document, with its length.
func writeBody(c echo.Context, status int, body []byte) error {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	h.Set(echo.HeaderContentLength, strconv.Itoa(len(body)))
	c.Response().WriteHeader(status)
	_, err := c.Response().Write(body)
	return err
}
