package loadgen

import (
	"strconv"
	"strings"
	"testing"
)

const scrapeSample = `# HELP gateway_connects_total Socket upgrade attempts by result.
# TYPE gateway_connects_total counter
gateway_connects_total{result="ok"} 12
gateway_connects_total{result="rate_limited"} 7
gateway_connects_total{result="rate_limited_x"} 99
gateway_flood_closes_total 3
gateway_flood_closes_total_extra 5
`

func TestSeriesValue(t *testing.T) {
	for series, want := range map[string]float64{
		`gateway_connects_total{result="rate_limited"}`: 7,
		`gateway_connects_total{result="ok"}`:           12,
		"gateway_flood_closes_total":                    3,
	} {
		got, err := seriesValue([]byte(scrapeSample), series)
		if err != nil || got != want {
			t.Errorf("%s = %v, %v; want %v", series, got, err, want)
		}
	}
	for _, missing := range []string{`gateway_connects_total{result="max_conns"}`, "gateway_connects_total", "gateway_flood"} {
		if v, err := seriesValue([]byte(scrapeSample), missing); err == nil {
			t.Errorf("%s = %v, want an error (no such series)", missing, v)
		}
	}
	if _, err := seriesValue([]byte("x_total NaNa\n"), "x_total"); err == nil {
		t.Error("a malformed value parsed")
	}
}

func FuzzSeriesValue(f *testing.F) {
	f.Add([]byte(scrapeSample), "gateway_flood_closes_total")
	f.Add([]byte("a 1\na 2\n"), "a")
	f.Add([]byte("a \n"), "a")
	f.Fuzz(func(t *testing.T, body []byte, series string) {
		v, err := seriesValue(body, series)
		if err != nil {
			return
		}
		// A value was found: it is the first field after "series " on
		// some line, and it parses as a float.
		for line := range strings.Lines(string(body)) {
			if rest, ok := strings.CutPrefix(line, series+" "); ok {
				f := strings.Fields(rest)
				if len(f) == 0 {
					t.Fatalf("value %v from a line without one: %q", v, line)
				}
				x, perr := strconv.ParseFloat(f[0], 64)
				if perr != nil || !(x == v || x != x && v != v) {
					t.Fatalf("value %v, first matching line says %q", v, f[0])
				}
				return
			}
		}
		t.Fatalf("value %v without a matching line", v)
	})
}
