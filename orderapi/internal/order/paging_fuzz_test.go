package order

import (
	"strconv"
	"strings"
	"testing"

	"orderpush/pkg/wire"
)

// FuzzIntParam: the paging parameters (limit, after) never panic; an
// accepted value is in range and is the decimal the client wrote; a
// refused one is an invalid_field error naming the parameter.
func FuzzIntParam(f *testing.F) {
	for _, s := range []string{"", "1", "50", "200", "201", "0", "-1", "+5", "1e3", "0x10", " 5", "99999999999999999999", "007"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := intParam("limit", raw, 50, 1, 200)
		if err != nil {
			e, ok := err.(*Error)
			if !ok || e.Code != wire.CodeInvalidField || !strings.HasPrefix(e.Message, "limit: ") {
				t.Fatalf("intParam(%q): %v (%T)", raw, err, err)
			}
			return
		}
		if v < 1 || v > 200 {
			t.Fatalf("intParam(%q) = %d, out of range", raw, v)
		}
		if raw != "" {
			if n, err := strconv.ParseInt(raw, 10, 64); err != nil || n != v {
				t.Fatalf("intParam(%q) = %d, not what was written", raw, v)
			}
		}
	})
}
