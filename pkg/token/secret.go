package token

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
)

// MinSecretDistinct is the fewest distinct byte values an HS256 secret may
// have: "aaaa...a" or "abababab..." is long enough but guessable.
const MinSecretDistinct = 10

// placeholders are the example secrets ever shipped in this repository's
// files (deploy/.env.example, docs). A deployment started with one of them
// can be forged by anyone who read the repository, so they are refused even
// though they pass the length and variety checks. This is the one list; a
// test scans the repository's shipped files and fails when it finds a
// JWT_SECRET-like value the checks do not refuse.
func placeholder(secret string) bool {
	switch secret {
	case "change-me-this-is-a-placeholder-secret-of-48-bytes",
		"change-me-to-32-or-more-random-bytes",
		"replace-with-output-of-token-gen-secret":
		return true
	}
	return false
}

// ErrWeakSecret is wrapped by CheckSecret's refusals.
var ErrWeakSecret = errors.New("JWT_SECRET: refused")

// CheckSecret refuses an HS256 secret that anyone could guess
// (PROTOCOL.md, "Limits and hostile clients"): shorter than MinSecretLen
// bytes, fewer than MinSecretDistinct distinct byte values, or a
// placeholder shipped in the repository. The message names JWT_SECRET and
// never contains the secret.
func CheckSecret(secret []byte) error {
	if len(secret) < MinSecretLen {
		return fmt.Errorf("%w: must be at least %d bytes, got %d (generate one: go run ./scripts/cmd/token -gen-secret)", ErrWeakSecret, MinSecretLen, len(secret))
	}
	var seen [256]bool
	distinct := 0
	for _, b := range secret {
		if !seen[b] {
			seen[b] = true
			distinct++
		}
	}
	if distinct < MinSecretDistinct {
		return fmt.Errorf("%w: has only %d distinct byte values, want at least %d (generate one: go run ./scripts/cmd/token -gen-secret)", ErrWeakSecret, distinct, MinSecretDistinct)
	}
	if placeholder(string(secret)) {
		return fmt.Errorf("%w: is the example value shipped with orderpush (generate one: go run ./scripts/cmd/token -gen-secret)", ErrWeakSecret)
	}
	return nil
}

// NewSecret returns a fresh random HS256 secret: 32 random bytes as 64 hex
// characters.
func NewSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
