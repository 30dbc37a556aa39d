package session

import (
	"time"

	"orderpush/pkg/config"
)

// DefaultMsgRate is CLIENT_MSG_RATE's default: 10 a second, a burst of 20.
var DefaultMsgRate = config.Rate{N: 10, Per: time.Second}

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

	verdict verdict // on the latest message, for Answer
}

func newLimiter(r config.Rate) *limiter {
	l := &limiter{}
	if !r.Off() {
		l.rate, l.burst = r.PerSecond(), float64(r.Burst())
		l.tokens = l.burst
	}
	return l
}

// take decides about one message arriving at now.
func (l *limiter) take(now time.Time) verdict {
	l.verdict = l.decide(now)
	return l.verdict
}

func (l *limiter) decide(now time.Time) verdict {
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
