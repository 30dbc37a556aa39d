package token_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"orderpush/pkg/token"
)

// clock is a settable time for the verifier's expiry checks.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func cachedVerifier(t testing.TB, size int, c *clock) *token.Verifier {
	t.Helper()
	cfg := token.Config{Secret: secret, CacheSize: size}
	if c != nil {
		cfg.Now = c.now
	}
	v, err := token.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mintAt(t testing.TB, c *clock, sub string, ttl time.Duration) string {
	t.Helper()
	raw, err := token.MintClaims(secret, token.Claims{Role: token.RoleMerchant, RegisteredClaims: jwt.RegisteredClaims{
		Subject: sub, ExpiresAt: jwt.NewNumericDate(c.now().Add(ttl)),
	}})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestCacheDoesNotOutliveExp(t *testing.T) {
	t.Parallel()
	c := newClock()
	v := cachedVerifier(t, 0, c)
	raw := mintAt(t, c, "m1", time.Minute)
	for range 2 { // the second answer comes from the cache
		if got, err := v.Verify(raw); err != nil || got.Subject != "m1" {
			t.Fatalf("Verify = %+v, %v", got, err)
		}
	}
	if n := token.CacheLen(v); n != 1 {
		t.Fatalf("cache holds %d tokens, want 1", n)
	}
	// Past exp and the parser's leeway: refused, not served from the cache.
	c.advance(time.Minute + 10*time.Second)
	if _, err := v.Verify(raw); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Verify after exp = %v, want expired", err)
	}
	if n := token.CacheLen(v); n != 0 {
		t.Fatalf("cache still holds %d tokens after their exp", n)
	}
}

func TestCacheIsBounded(t *testing.T) {
	t.Parallel()
	c := newClock()
	const size = 8
	v := cachedVerifier(t, size, c)
	for i := range 100 {
		sub := fmt.Sprintf("m%d", i)
		got, err := v.Verify(mintAt(t, c, sub, time.Hour))
		if err != nil || got.Subject != sub {
			t.Fatalf("token %d: Verify = %+v, %v", i, got, err)
		}
		if n := token.CacheLen(v); n > size {
			t.Fatalf("cache holds %d tokens, bound %d", n, size)
		}
	}
	if n := token.CacheLen(v); n != size {
		t.Fatalf("cache holds %d tokens, want it full (%d)", n, size)
	}
}

func TestCacheNeedsTheSameSignatureAndAlg(t *testing.T) {
	t.Parallel()
	c := newClock()
	v := cachedVerifier(t, 0, c)
	cl := token.Claims{Role: token.RoleMerchant, RegisteredClaims: jwt.RegisteredClaims{
		Subject: "m1", ExpiresAt: jwt.NewNumericDate(c.now().Add(time.Hour)),
	}}
	good := sign(t, jwt.SigningMethodHS256, cl, secret)
	if _, err := v.Verify(good); err != nil {
		t.Fatal(err)
	}
	head, _, _ := strings.Cut(good, ".")
	dot := strings.LastIndexByte(good, '.')
	sig := []byte(good[dot+1:])
	sig[0] ^= 'A' ^ 'B'
	bad := map[string]string{
		"other secret":     sign(t, jwt.SigningMethodHS256, cl, []byte(strings.Repeat("x", 32))),
		"changed byte":     good[:dot+1] + string(sig),
		"no signature":     good[:dot+1],
		"HS512":            sign(t, jwt.SigningMethodHS512, cl, secret),
		"alg none":         sign(t, jwt.SigningMethodNone, cl, jwt.UnsafeAllowNoneSignatureType),
		"other payload":    head + "." + strings.Split(sign(t, jwt.SigningMethodHS256, claims(token.RoleMerchant, "m2", time.Hour), secret), ".")[1] + good[dot:],
		"trailing garbage": good + "x",
	}
	for name, raw := range bad {
		if got, err := v.Verify(raw); err == nil {
			t.Errorf("%s: accepted with the good token cached: %+v", name, got)
		}
	}
	if n := token.CacheLen(v); n != 1 {
		t.Fatalf("cache holds %d tokens, want only the good one", n)
	}
}

func TestCacheHandsOutCopies(t *testing.T) {
	t.Parallel()
	c := newClock()
	v := cachedVerifier(t, 0, c)
	raw := mintAt(t, c, "m1", time.Hour)
	first, err := v.Verify(raw)
	if err != nil {
		t.Fatal(err)
	}
	exp := first.ExpiresAt.Time
	first.ExpiresAt.Time = exp.Add(time.Hour)
	first.Subject = "m2"
	again, err := v.Verify(raw)
	if err != nil || again.Subject != "m1" || !again.ExpiresAt.Time.Equal(exp) {
		t.Fatalf("second Verify = %+v, %v: the caller's change reached the cache", again, err)
	}
}

func TestCacheConcurrent(t *testing.T) {
	t.Parallel()
	c := newClock()
	v := cachedVerifier(t, 16, c)
	toks := make([]string, 32) // twice the bound: entries come and go
	for i := range toks {
		toks[i] = mintAt(t, c, fmt.Sprintf("m%d", i), time.Hour)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				k := (i*7 + g) % len(toks)
				got, err := v.Verify(toks[k])
				if want := fmt.Sprintf("m%d", k); err != nil || got.Subject != want {
					t.Errorf("Verify(token %d) = %+v, %v", k, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestCacheOff(t *testing.T) {
	t.Parallel()
	c := newClock()
	v := cachedVerifier(t, -1, c)
	raw := mintAt(t, c, "m1", time.Minute)
	if _, err := v.Verify(raw); err != nil {
		t.Fatal(err)
	}
	if n := token.CacheLen(v); n != 0 {
		t.Fatalf("cache off holds %d tokens", n)
	}
}

// BenchmarkVerify: one client's token verified again and again, as every
// request of a client carries the same token.
func BenchmarkVerify(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
	}{{"uncached", -1}, {"cached", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			c := newClock()
			v := cachedVerifier(b, bc.size, c)
			raw := mintAt(b, c, "m1", time.Hour)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
