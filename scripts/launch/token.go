package launch

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"orderpush/pkg/token"
)

// NewSecret returns a fresh random JWT_SECRET: 64 hex characters, twice the
// 32 bytes the services require.
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// MintToken signs an HS256 token with secret. It panics only on a
// programming error: HS256 signing with a []byte key cannot fail.
func MintToken(secret []byte, role, sub string, ttl time.Duration) string {
	s, err := token.Mint(secret, role, sub, ttl)
	if err != nil {
		panic(err)
	}
	return s
}
