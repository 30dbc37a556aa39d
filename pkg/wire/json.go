package wire

import (
	"bytes"
	"encoding/json"
)

// Marshal is json.Marshal without HTML escaping, so frames carry "<", ">"
// and "&" as written; everything that builds a frame uses it.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
