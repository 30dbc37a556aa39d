package config_test

import (
	"strings"
	"testing"
	"time"

	"orderpush/pkg/config"
)

func TestParseRate(t *testing.T) {
	t.Parallel()
	good := map[string]config.Rate{
		"0":         {},
		"0/s":       {},
		"20/s":      {N: 20, Per: time.Second},
		"600/m":     {N: 600, Per: time.Minute},
		"1000000/s": {N: 1_000_000, Per: time.Second},
	}
	for in, want := range good {
		got, err := config.ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "20", "20/h", "/s", "-1/s", "+1/s", "1.5/s", "1000001/s", "20/S", " 20/s", "20/s/s", "0x10/s"} {
		if r, err := config.ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) = %+v, want an error", in, r)
		}
	}
	r := config.Rate{N: 20, Per: time.Second}
	if r.Burst() != 40 || r.PerSecond() != 20 || r.String() != "20/s" || r.Off() {
		t.Errorf("20/s: burst %d, per second %v, %q", r.Burst(), r.PerSecond(), r)
	}
	if m := (config.Rate{N: 30, Per: time.Minute}); m.PerSecond() != 0.5 || m.String() != "30/m" {
		t.Errorf("30/m: %v %q", m.PerSecond(), m)
	}
}

func TestLoaderRate(t *testing.T) {
	t.Parallel()
	def := config.Rate{N: 20, Per: time.Second}
	l := config.NewLoader(env(map[string]string{"R": "5/m", "OFF": "0", "BAD": "fast"}))
	if got := l.Rate("R", def); got != (config.Rate{N: 5, Per: time.Minute}) {
		t.Errorf("R = %+v", got)
	}
	if got := l.Rate("OFF", def); !got.Off() {
		t.Errorf("OFF = %+v", got)
	}
	if got := l.Rate("UNSET", def); got != def {
		t.Errorf("UNSET = %+v", got)
	}
	l.Rate("BAD", def)
	if err := l.Err(); err == nil || !strings.Contains(err.Error(), "BAD:") {
		t.Fatalf("err = %v, want one naming BAD", err)
	}
}

// FuzzParseRate: never panics; an accepted rate prints back to a string
// that parses to the same rate, and its figures are finite and positive.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"0", "20/s", "600/m", "1000000/s", "1/m", "", "20", "/s", "-1/s", "20/h", "9999999/s", "00020/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := config.ParseRate(s)
		if err != nil {
			if r != (config.Rate{}) {
				t.Fatalf("error %v with a rate %+v", err, r)
			}
			return
		}
		back, err := config.ParseRate(r.String())
		if err != nil || back != r {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, r, r.String(), back, err)
		}
		if !r.Off() && (r.PerSecond() <= 0 || r.Burst() < 2) {
			t.Fatalf("%q: per second %v, burst %d", s, r.PerSecond(), r.Burst())
		}
	})
}

// FuzzParseRedisURL: never panics; an accepted URL yields exactly one of
// the single-node and the cluster options, with at least one address.
func FuzzParseRedisURL(f *testing.F) {
	for _, s := range []string{
		"redis://127.0.0.1:6379/0", "rediss://user:pw@host:6380/2", "redis-cluster://a:7000?addr=b:7001&addr=c:7002",
		"redis://", "redis-cluster://", "http://x", "redis://h:notaport", "redis://h:1/99999999999", "unix:///tmp/r.sock",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := config.ParseRedisURL(s)
		if err != nil {
			return
		}
		switch {
		case c.Single != nil && c.Cluster == nil:
			if c.Single.Addr == "" {
				t.Fatalf("%q: single node without an address", s)
			}
		case c.Cluster != nil && c.Single == nil:
			if len(c.Cluster.Addrs) == 0 {
				t.Fatalf("%q: cluster without an address", s)
			}
		default:
			t.Fatalf("%q: single %v, cluster %v", s, c.Single != nil, c.Cluster != nil)
		}
	})
}
