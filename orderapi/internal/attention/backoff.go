package attention

import (
	"math/rand/v2"
	"time"
)

// Retry schedule (PROTOCOL.md: exponential backoff with jitter, 1 s up to
// 5 min, for 24 h).
const (
	BackoffBase = time.Second
	BackoffCap  = 5 * time.Minute
)

// BackoffBounds is the range Backoff draws the delay after the failures-th
// failed attempt from: [BackoffBase, min(BackoffCap, BackoffBase*2^(failures-1))].
// So the first retry comes 1 s after the first failure, the second 1-2 s
// after the second, and from the ninth on 1 s to 5 min after.
func BackoffBounds(failures int) (lo, hi time.Duration) {
	hi = BackoffBase
	for i := 1; i < failures && hi < BackoffCap; i++ {
		hi *= 2
	}
	return BackoffBase, min(hi, BackoffCap)
}

// Backoff draws the delay before the next attempt after failures failed
// ones, uniformly in BackoffBounds ("full jitter": replicas retrying a
// receiver that came back do not all hit it at once). The floor of 1 s
// keeps a dead receiver from being hammered by zero delays. rnd returns a
// number in [0, 1); nil means math/rand/v2.
func Backoff(failures int, rnd func() float64) time.Duration {
	if rnd == nil {
		rnd = rand.Float64
	}
	lo, hi := BackoffBounds(failures)
	return lo + time.Duration(rnd()*float64(hi-lo))
}
