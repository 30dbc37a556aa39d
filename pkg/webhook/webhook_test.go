package webhook_test

import (
	"strings"
	"testing"

	"orderpush/pkg/webhook"
)

// A known HMAC-SHA256 vector (RFC 4231 style, widely published), and
// Verify's refusals.
func TestSignVerify(t *testing.T) {
	t.Parallel()
	key, msg := []byte("key"), []byte("The quick brown fox jumps over the lazy dog")
	const want = "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
	if got := webhook.Sign(key, msg); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	if !webhook.Verify(key, msg, want) {
		t.Fatal("Verify refused a good signature")
	}
	for _, bad := range []string{"", "sha256=", strings.TrimPrefix(want, "sha256="), "sha1=" + want[7:],
		want[:len(want)-1] + "9", strings.ToUpper(want), want + "00", "sha256=zz" + want[9:]} {
		if webhook.Verify(key, msg, bad) {
			t.Errorf("Verify accepted %q", bad)
		}
	}
	if webhook.Verify(key, append(msg, '.'), want) || webhook.Verify([]byte("kez"), msg, want) {
		t.Error("Verify accepted another body or key")
	}
}

func FuzzVerify(f *testing.F) {
	f.Add([]byte("key"), []byte(`{"id":"x"}`), "sha256=00")
	f.Add([]byte("k"), []byte(""), "")
	f.Fuzz(func(t *testing.T, key, body []byte, header string) {
		good := webhook.Sign(key, body)
		if !webhook.Verify(key, body, good) {
			t.Fatalf("own signature refused: key %q body %q", key, body)
		}
		if header != good && webhook.Verify(key, body, header) {
			t.Fatalf("accepted %q, the signature is %q", header, good)
		}
	})
}
