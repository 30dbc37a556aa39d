package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate is a rate limit setting (PROTOCOL.md, "Limits and hostile clients"):
// N events per Per, with a burst of twice N. The zero Rate is "off".
type Rate struct {
	N   int           // events per Per; 0: no limit
	Per time.Duration // time.Second or time.Minute
}

// maxRateN bounds N so that per-second arithmetic never overflows and a
// typo (an extra zero or ten) is caught rather than silently meaning "off".
const maxRateN = 1_000_000

// Off reports whether the limit is turned off.
func (r Rate) Off() bool { return r.N == 0 }

// PerSecond is the sustained rate in events per second.
func (r Rate) PerSecond() float64 {
	if r.Off() {
		return 0
	}
	return float64(r.N) / r.Per.Seconds()
}

// Burst is how many events may arrive at once: twice N, at least 1.
func (r Rate) Burst() int { return max(2*r.N, 1) }

// String is the setting's syntax: "0", "20/s", "600/m".
func (r Rate) String() string {
	if r.Off() {
		return "0"
	}
	if r.Per == time.Minute {
		return strconv.Itoa(r.N) + "/m"
	}
	return strconv.Itoa(r.N) + "/s"
}

// ParseRate reads "N/s" or "N/m" (N a decimal integer from 1 to 1,000,000)
// or "0" (off).
func ParseRate(s string) (Rate, error) {
	if s == "0" {
		return Rate{}, nil
	}
	num, unit, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("want N/s, N/m or 0, got %q", s)
	}
	var per time.Duration
	switch unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	default:
		return Rate{}, fmt.Errorf("want N/s, N/m or 0, got unit %q in %q", unit, s)
	}
	if num == "" || len(num) > 7 || strings.TrimLeft(num, "0123456789") != "" {
		return Rate{}, fmt.Errorf("want N/s, N/m or 0 with N a whole number, got %q", s)
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || n > maxRateN {
		return Rate{}, fmt.Errorf("want N from 0 to %d, got %q", maxRateN, s)
	}
	if n == 0 {
		return Rate{}, nil
	}
	return Rate{N: n, Per: per}, nil
}

// Rate returns the setting parsed by ParseRate, or def when unset.
func (l *Loader) Rate(name string, def Rate) Rate {
	s := l.String(name, "")
	if s == "" {
		return def
	}
	r, err := ParseRate(s)
	if err != nil {
		l.Fail(name, "%v", err)
		return def
	}
	return r
}
