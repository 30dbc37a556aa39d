package token

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultCacheSize is the number of verified tokens a Verifier remembers
// unless Config.CacheSize says otherwise. A client sends the same token with
// every request until it expires, and checking it again (HMAC or signature,
// base64 and JSON through reflection) was about 7% of the order API's CPU
// under load; 4,096 entries of about 200 bytes each cover that many active
// clients per process for under 1 MiB.
const DefaultCacheSize = 4096

// cache remembers the claims of tokens that passed Verify, keyed by the
// SHA-256 of the whole token: header (so the algorithm), payload and
// signature. A token differing in any byte, a re-signed one included, is
// a different key, and the token itself is not kept. An entry is served
// only before the token's exp, never within Verify's leeway after it, so
// the cache never lets a token live longer than verifying it would. When
// full, an arbitrary entry (Go's map order) makes room: bounded memory
// matters more here than the best hit rate. Safe for concurrent use.
type cache struct {
	size int
	now  func() time.Time

	mu      sync.Mutex
	entries map[[sha256.Size]byte]cached
}

type cached struct {
	claims Claims
	exp    time.Time
}

func newCache(size int, now func() time.Time) *cache {
	return &cache{size: size, now: now, entries: make(map[[sha256.Size]byte]cached, size)}
}

func cacheKey(raw string) [sha256.Size]byte { return sha256.Sum256([]byte(raw)) }

// get returns a copy of the claims cached under key while they are before
// their exp.
func (c *cache) get(key [sha256.Size]byte) (Claims, bool) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok && !now.Before(e.exp) {
		delete(c.entries, key)
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		return Claims{}, false
	}
	return cloneClaims(e.claims), true
}

// put remembers verified claims, which always carry exp (Verify requires it).
func (c *cache) put(key [sha256.Size]byte, cl Claims) {
	if cl.ExpiresAt == nil || !c.now().Before(cl.ExpiresAt.Time) {
		return
	}
	e := cached{claims: cloneClaims(cl), exp: cl.ExpiresAt.Time}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.size {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = e
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// cloneClaims copies the pointers and the slice, so that a caller changing
// its claims cannot change what the cache hands the next caller.
func cloneClaims(c Claims) Claims {
	d := func(n *jwt.NumericDate) *jwt.NumericDate {
		if n == nil {
			return nil
		}
		v := *n
		return &v
	}
	c.ExpiresAt, c.NotBefore, c.IssuedAt = d(c.ExpiresAt), d(c.NotBefore), d(c.IssuedAt)
	if c.Audience != nil {
		c.Audience = append(jwt.ClaimStrings(nil), c.Audience...)
	}
	return c
}
