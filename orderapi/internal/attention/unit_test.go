package attention_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"orderpush/orderapi/internal/attention"
)

// The retry schedule's bounds, checked without sleeping: exponential from
// 1 s, capped at 5 min, every draw inside its bounds, and enough attempts
// to span the 24 h of retries.
func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	wantHi := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300}
	for i, w := range wantHi {
		lo, hi := attention.BackoffBounds(i + 1)
		if lo != time.Second || hi != w*time.Second {
			t.Errorf("after %d failures: [%s, %s], want [1s, %s]", i+1, lo, hi, w*time.Second)
		}
	}
	if lo, hi := attention.BackoffBounds(1 << 20); lo != time.Second || hi != 5*time.Minute {
		t.Errorf("after many failures: [%s, %s]", lo, hi)
	}
	for n := 1; n < 40; n++ {
		lo, hi := attention.BackoffBounds(n)
		for _, r := range []float64{0, 0.5, 0.999999} {
			if d := attention.Backoff(n, func() float64 { return r }); d < lo || d > hi {
				t.Errorf("Backoff(%d) with %v = %s outside [%s, %s]", n, r, d, lo, hi)
			}
		}
		if d := attention.Backoff(n, nil); d < lo || d > hi {
			t.Errorf("Backoff(%d) = %s outside [%s, %s]", n, d, lo, hi)
		}
	}
	// Worst case (every draw at its ceiling) the 24 h are spanned by a
	// bounded number of attempts; best case (every draw 1 s) they are
	// many, but still one a second at most.
	var total time.Duration
	n := 0
	for ; total < attention.RetryFor; n++ {
		_, hi := attention.BackoffBounds(n + 1)
		total += hi
	}
	if n < 280 || n > 300 {
		t.Errorf("%d attempts at the ceiling span 24 h, want about 290", n)
	}
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"https://alerts.example/orderpush", "http://127.0.0.1:9000/hook?x=1",
		"https://user:pw@alerts.example:8443/a/b", "http://[::1]:80/"} {
		if _, err := attention.ParseURL(ok); err != nil {
			t.Errorf("ParseURL(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "alerts.example/hook", "ftp://alerts.example/", "file:///etc/passwd",
		"javascript:alert(1)", "https:///path", "https://alerts.example/#frag", "https://alerts.example:0/",
		"https://alerts.example:99999/", "https://alerts.example:x/", "http://:80/", "https://alerts.example/?",
		"https://alerts.example/" + strings.Repeat("a", 3000), "mailto:a@b", "//alerts.example/x"} {
		if u, err := attention.ParseURL(bad); err == nil {
			t.Errorf("ParseURL(%q) = %v, want an error", bad, u)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"https://alerts.example/orderpush", "http://127.0.0.1:9000/h?x=1", "ftp://x/",
		"https://u:p@h:1/", "http://[::1]/", "https://h/#f", "http://h:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := attention.ParseURL(raw)
		if err != nil {
			return
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" {
			t.Fatalf("accepted %q as %#v", raw, u)
		}
		// What is accepted survives a round trip through its string form,
		// which is what the sender requests.
		again, err := url.Parse(u.String())
		if err != nil || again.Host != u.Host || again.Scheme != u.Scheme {
			t.Fatalf("accepted %q does not round-trip: %q %v", raw, u.String(), err)
		}
	})
}
