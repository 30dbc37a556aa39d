// Package token verifies and mints the JWTs of PROTOCOL.md ("Identities and
// tokens"). The accepted algorithm is pinned by configuration, exp is always
// required, and the role and subject are checked here so that callers only
// see well-formed claims. A Verifier is safe for concurrent use.
package token

import (
	"cmp"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"orderpush/pkg/wire"
)

// Roles a token may carry.
const (
	RoleMerchant = "merchant"
	RoleMember   = "member"
	RoleService  = "service"
)

// MinSecretLen is the shortest HS256 secret accepted.
const MinSecretLen = 32

// Claims are the claims of every token of the system.
type Claims struct {
	Role string `json:"role"`
	jwt.RegisteredClaims
}

// ErrInvalid is wrapped by every verification failure. Its message is safe to
// show to the client; it never contains the token.
var ErrInvalid = errors.New("invalid token")

// Config selects the key and the checks. Exactly one of Secret and
// PublicKeyFile is set.
type Config struct {
	Secret        []byte // JWT_SECRET: HS256
	PublicKeyFile string // JWT_PUBLIC_KEY_FILE: RS256 (RSA) or EdDSA (Ed25519), PEM
	Issuer        string // JWT_ISSUER: checked when set
	Audience      string // JWT_AUDIENCE: checked when set
	// CacheSize bounds the verified tokens remembered until their exp:
	// 0 means DefaultCacheSize, negative turns the cache off.
	CacheSize int
	// Now is the clock of the cache's expiry check (tests); nil is time.Now.
	Now func() time.Time
}

// Verifier checks tokens against one Config.
type Verifier struct {
	parser *jwt.Parser
	key    any
	cache  *cache // nil when off
}

// NewVerifier validates cfg and returns a Verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	var alg string
	var key any
	switch {
	case len(cfg.Secret) > 0 && cfg.PublicKeyFile != "":
		return nil, errors.New("set JWT_SECRET or JWT_PUBLIC_KEY_FILE, not both")
	case cfg.PublicKeyFile != "":
		pub, err := readPublicKey(cfg.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("JWT_PUBLIC_KEY_FILE: %w", err)
		}
		switch pub.(type) {
		case *rsa.PublicKey:
			alg = jwt.SigningMethodRS256.Alg()
		case ed25519.PublicKey:
			alg = jwt.SigningMethodEdDSA.Alg()
		default:
			return nil, fmt.Errorf("JWT_PUBLIC_KEY_FILE: unsupported key type %T (want RSA or Ed25519)", pub)
		}
		key = pub
	case len(cfg.Secret) > 0:
		if err := CheckSecret(cfg.Secret); err != nil {
			return nil, err
		}
		alg, key = jwt.SigningMethodHS256.Alg(), cfg.Secret
	default:
		return nil, errors.New("JWT_SECRET: required (or JWT_PUBLIC_KEY_FILE)")
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{alg}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(5 * time.Second),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	// The parser's time checks and the cache's use one clock.
	opts = append(opts, jwt.WithTimeFunc(now))
	v := &Verifier{parser: jwt.NewParser(opts...), key: key}
	if cfg.CacheSize >= 0 {
		v.cache = newCache(cmp.Or(cfg.CacheSize, DefaultCacheSize), now)
	}
	return v, nil
}

func readPublicKey(path string) (crypto.PublicKey, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	return x509.ParsePKIXPublicKey(block.Bytes)
}

// Verify parses raw, checks signature, algorithm, expiry, issuer, audience,
// role and subject, and returns the claims. Errors wrap ErrInvalid. A token
// that passed before is answered from the cache until its exp.
func (v *Verifier) Verify(raw string) (Claims, error) {
	if raw == "" {
		return Claims{}, fmt.Errorf("%w: missing token", ErrInvalid)
	}
	if len(raw) > 8<<10 {
		return Claims{}, fmt.Errorf("%w: token too long", ErrInvalid)
	}
	if v.cache == nil {
		return v.verify(raw)
	}
	key := cacheKey(raw)
	if c, ok := v.cache.get(key); ok {
		return c, nil
	}
	c, err := v.verify(raw)
	if err == nil {
		v.cache.put(key, c)
	}
	return c, err
}

func (v *Verifier) verify(raw string) (Claims, error) {
	var c Claims
	if _, err := v.parser.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return v.key, nil }); err != nil {
		return Claims{}, fmt.Errorf("%w: %s", ErrInvalid, reason(err))
	}
	switch c.Role {
	case RoleMerchant:
		if !wire.ValidMerchantID(c.Subject) {
			return Claims{}, fmt.Errorf("%w: sub is not a valid merchant id", ErrInvalid)
		}
	case RoleMember:
		if !wire.ValidUserID(c.Subject) {
			return Claims{}, fmt.Errorf("%w: sub is not a valid user id", ErrInvalid)
		}
	case RoleService:
		if c.Subject == "" {
			return Claims{}, fmt.Errorf("%w: sub is required", ErrInvalid)
		}
	default:
		return Claims{}, fmt.Errorf("%w: unknown role", ErrInvalid)
	}
	return c, nil
}

// reason turns a jwt error into a short message without token material.
func reason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token is expired"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return missingClaims(err)
	case strings.Contains(err.Error(), "signing method"):
		// golang-jwt reports a refused algorithm as an invalid signature;
		// say which it is, since that is the client's mistake to fix.
		return "signing method not accepted"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "signature is invalid"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "token is malformed"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token is not valid yet"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "token is unverifiable"
	default:
		return "token is invalid"
	}
}

// missingClaims names the required claims a token lacks. golang-jwt wraps
// one ErrTokenRequiredClaimMissing per claim with the message "<claim>
// claim is required"; telling the client which one saves it guessing (a
// token without iss used to be told "exp is required").
func missingClaims(err error) string {
	msg := err.Error()
	var names []string
	for _, c := range []string{"exp", "iss", "aud"} {
		if strings.Contains(msg, c+" claim is required") {
			names = append(names, c)
		}
	}
	switch len(names) {
	case 0:
		return "a required claim is missing"
	case 1:
		return names[0] + " is required"
	default:
		return strings.Join(names, " and ") + " are required"
	}
}

// Mint signs an HS256 token for tests, tools and service calls.
func Mint(secret []byte, role, sub string, ttl time.Duration) (string, error) {
	return MintClaims(secret, Claims{Role: role, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   sub,
		IssuedAt:  jwt.NewNumericDate(time.Now()),
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl)),
	}})
}

// MintClaims signs arbitrary claims with HS256.
func MintClaims(secret []byte, c Claims) (string, error) {
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return s, nil
}
