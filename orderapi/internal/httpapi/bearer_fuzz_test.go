package httpapi

import (
	"strings"
	"testing"
)

func TestBearerToken(t *testing.T) {
	t.Parallel()
	for h, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "BEARER x.y.z": "x.y.z"} {
		if raw, msg := bearerToken(h); raw != want || msg != "" {
			t.Errorf("bearerToken(%q) = %q, %q", h, raw, msg)
		}
	}
	for _, h := range []string{"", "Basic abc", "Bearerabc", "Token abc"} {
		if raw, msg := bearerToken(h); raw != "" || msg == "" {
			t.Errorf("bearerToken(%q) = %q, %q; want a refusal", h, raw, msg)
		}
	}
}

// FuzzBearerToken: never panics; either a refusal message or a token with
// no surrounding space that came after "Bearer " in the header.
func FuzzBearerToken(f *testing.F) {
	for _, h := range []string{"Bearer a.b.c", "", "Bearer", "Bearer ", "bearer\tx", "Basic dXNlcjpwdw==", "Bearer  a b ", "Bearer \x00"} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, h string) {
		raw, msg := bearerToken(h)
		if msg != "" {
			if raw != "" {
				t.Fatalf("%q: both a token and a refusal", h)
			}
			return
		}
		if !strings.EqualFold(h[:7], "bearer ") || raw != strings.TrimSpace(raw) || !strings.Contains(h, raw) {
			t.Fatalf("bearerToken(%q) = %q", h, raw)
		}
	})
}
