package admission

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// rateShards spreads the buckets over this many locks, so concurrent
// connects from different addresses rarely wait for each other.
const rateShards = 16

// DefaultMaxBuckets bounds the addresses whose buckets are remembered.
const DefaultMaxBuckets = 64 << 10

// rateLimiter is one token bucket per client address. Memory stays bounded
// under a flood of distinct addresses: a bucket that has refilled to its
// burst is the same as no bucket, so when a shard reaches its share of the
// cap every such idle bucket is dropped; if that frees less than half the
// shard (every address was active within the refill time, burst/rate = 2 s
// at the default), arbitrary buckets are dropped until half is free. Each
// sweep frees at least half a shard, so its cost per connect is O(1)
// amortised, and the map never holds more than maxBuckets entries (about
// 100 bytes each: 6.5 MB at the default). A dropped active bucket only
// forgets that address's recent connects: it gets a fresh burst, which is
// the most an attacker gains by cycling addresses, and it needs more than
// maxBuckets addresses to do it.
type rateLimiter struct {
	rate     float64 // tokens per second
	burst    float64
	perShard int
	shards   [rateShards]rateShard
}

type rateShard struct {
	mu      sync.Mutex
	buckets map[netip.Addr]bucket // guarded by mu
}

type bucket struct {
	tokens float64
	last   int64 // unix nanoseconds of the last update
}

func newRateLimiter(perSecond float64, burst, maxBuckets int) *rateLimiter {
	l := &rateLimiter{rate: perSecond, burst: float64(burst), perShard: max(maxBuckets/rateShards, 2)}
	for i := range l.shards {
		l.shards[i].buckets = make(map[netip.Addr]bucket)
	}
	return l
}

func shardOf(a netip.Addr) int {
	b := a.As16()
	var h byte
	for _, x := range b {
		h = h*31 + x
	}
	return int(h) % rateShards
}

// allow takes one token from a's bucket. When there is none it reports
// how long until there is.
func (l *rateLimiter) allow(a netip.Addr, now time.Time) (bool, time.Duration) {
	s := &l.shards[shardOf(a)]
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.buckets[a]
	if !ok {
		if len(s.buckets) >= l.perShard {
			l.sweep(s, t)
		}
		b = bucket{tokens: l.burst, last: t}
	} else {
		b.tokens = l.refill(b, t)
		b.last = t
	}
	if b.tokens >= 1 {
		b.tokens--
		s.buckets[a] = b
		return true, 0
	}
	s.buckets[a] = b
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}

func (l *rateLimiter) refill(b bucket, t int64) float64 {
	elapsed := float64(max(t-b.last, 0)) / float64(time.Second)
	return math.Min(l.burst, b.tokens+elapsed*l.rate)
}

// sweep frees at least half of a full shard (see rateLimiter). s.mu is held.
func (l *rateLimiter) sweep(s *rateShard, t int64) {
	for a, b := range s.buckets {
		if l.refill(b, t) >= l.burst {
			delete(s.buckets, a)
		}
	}
	for a := range s.buckets {
		if len(s.buckets) <= l.perShard/2 {
			break
		}
		delete(s.buckets, a)
	}
}

// size is the number of buckets held (tests).
func (l *rateLimiter) size() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return n
}
