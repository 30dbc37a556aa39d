package session

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// MsgRate is CLIENT_MSG_RATE: client messages a session may send per
// second, with a burst of twice that (at least 1). Zero is off.
type MsgRate struct {
	PerSecond float64
}

// DefaultMsgRate is CLIENT_MSG_RATE's default, 10/s.
var DefaultMsgRate = MsgRate{PerSecond: 10}

// Burst is how many messages may come at once: twice the rate per second,
// at least 1.
func (r MsgRate) Burst() float64 { return max(1, math.Ceil(2*r.PerSecond)) }

// Off reports whether the limit is off.
func (r MsgRate) Off() bool { return r.PerSecond <= 0 }

func (r MsgRate) String() string {
	if r.Off() {
		return "0"
	}
	return strconv.FormatFloat(r.PerSecond, 'f', -1, 64) + "/s"
}

var errRate = errors.New(`want N/s or N/m (N a whole number, at most 1000000), or 0 for off`)

// ParseMsgRate reads the rate syntax of PROTOCOL.md "Limits and hostile
// clients": "N/s", "N/m", or "0" for off.
func ParseMsgRate(s string) (MsgRate, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return MsgRate{}, nil
	}
	num, unit, ok := strings.Cut(s, "/")
	if !ok || num == "" || len(num) > 7 || strings.TrimLeft(num, "0123456789") != "" {
		return MsgRate{}, fmt.Errorf("%q: %w", s, errRate)
	}
	n, err := strconv.Atoi(num)
	if err != nil || n > 1_000_000 {
		return MsgRate{}, fmt.Errorf("%q: %w", s, errRate)
	}
	switch unit {
	case "s":
		return MsgRate{PerSecond: float64(n)}, nil
	case "m":
		return MsgRate{PerSecond: float64(n) / 60}, nil
	}
	return MsgRate{}, fmt.Errorf("%q: %w", s, errRate)
}

// Flood rules (PROTOCOL.md "Limits and hostile clients"): a session whose
// refused messages reach twice the burst, or that is still over the limit
// floodSpan after it first went over, is closed with Policy.
const (
	floodSpan   = 10 * time.Second
	noticeEvery = time.Second // at most one rate_limited error frame per this
	// calmAfter: an accepted message this long after the last refused one
	// ends the episode of being over the limit.
	calmAfter = time.Second
)

// verdict is what the limiter says about one message.
type verdict uint8

const (
	allowed       verdict = iota
	refused               // drop it silently
	refusedNotice         // drop it and tell the client (rate_limited)
	flood                 // drop it and close the session with Policy
)

// limiter is a token bucket plus the flood rules. It is owned by the
// session's reading side (one message at a time), so it has no lock, and it
// allocates nothing.
type limiter struct {
	rate, burst float64
	tokens      float64
	last        time.Time // last refill

	overSince  time.Time // first refusal of the current episode; zero: not over
	lastRefuse time.Time
	lastNotice time.Time
	refusedN   int // refusals in the current episode
}

func newLimiter(r MsgRate) *limiter {
	l := &limiter{}
	if !r.Off() {
		l.rate, l.burst = r.PerSecond, r.Burst()
		l.tokens = l.burst
	}
	return l
}

// take decides about one message arriving at now.
func (l *limiter) take(now time.Time) verdict {
	if l.rate == 0 {
		return allowed
	}
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		if !l.overSince.IsZero() && now.Sub(l.lastRefuse) >= calmAfter {
			l.overSince, l.refusedN = time.Time{}, 0
		}
		return allowed
	}
	if l.overSince.IsZero() {
		l.overSince = now
	}
	l.lastRefuse = now
	l.refusedN++
	if float64(l.refusedN) >= 2*l.burst || now.Sub(l.overSince) >= floodSpan {
		return flood
	}
	if now.Sub(l.lastNotice) >= noticeEvery {
		l.lastNotice = now
		return refusedNotice
	}
	return refused
}
