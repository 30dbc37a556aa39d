package token_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"orderpush/pkg/token"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func claims(role, sub string, exp time.Duration) token.Claims {
	return token.Claims{Role: role, RegisteredClaims: jwt.RegisteredClaims{
		Subject: sub, ExpiresAt: jwt.NewNumericDate(time.Now().Add(exp)),
	}}
}

func sign(t *testing.T, m jwt.SigningMethod, c jwt.Claims, key any) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyHS256(t *testing.T) {
	t.Parallel()
	v, err := token.NewVerifier(token.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	good, _ := token.Mint(secret, token.RoleMerchant, "m1", time.Hour)
	c, err := v.Verify(good)
	if err != nil || c.Subject != "m1" || c.Role != token.RoleMerchant {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
	noExp := token.Claims{Role: token.RoleMerchant, RegisteredClaims: jwt.RegisteredClaims{Subject: "m1"}}
	tests := map[string]struct {
		raw  string
		want string
	}{
		"empty":         {"", "missing token"},
		"garbage":       {"a.b.c", "malformed"},
		"expired":       {sign(t, jwt.SigningMethodHS256, claims(token.RoleMerchant, "m1", -time.Minute), secret), "expired"},
		"no exp":        {sign(t, jwt.SigningMethodHS256, noExp, secret), "exp is required"},
		"wrong secret":  {sign(t, jwt.SigningMethodHS256, claims(token.RoleMerchant, "m1", time.Hour), []byte(strings.Repeat("x", 32))), "signature"},
		"HS512":         {sign(t, jwt.SigningMethodHS512, claims(token.RoleMerchant, "m1", time.Hour), secret), "signing method"},
		"alg none":      {sign(t, jwt.SigningMethodNone, claims(token.RoleMerchant, "m1", time.Hour), jwt.UnsafeAllowNoneSignatureType), "signing method"},
		"no role":       {sign(t, jwt.SigningMethodHS256, claims("", "m1", time.Hour), secret), "unknown role"},
		"admin role":    {sign(t, jwt.SigningMethodHS256, claims("admin", "m1", time.Hour), secret), "unknown role"},
		"bad merchant":  {sign(t, jwt.SigningMethodHS256, claims(token.RoleMerchant, "m/1", time.Hour), secret), "merchant id"},
		"long member":   {sign(t, jwt.SigningMethodHS256, claims(token.RoleMember, strings.Repeat("u", 33), time.Hour), secret), "user id"},
		"service nosub": {sign(t, jwt.SigningMethodHS256, claims(token.RoleService, "", time.Hour), secret), "sub is required"},
		"too long":      {strings.Repeat("a", 9000), "too long"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(tc.raw)
			if !errors.Is(err, token.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.want)
			}
			if tc.raw != "" && len(tc.raw) > 20 && strings.Contains(err.Error(), tc.raw[len(tc.raw)-20:]) {
				t.Fatal("error message contains token material")
			}
		})
	}
}

func TestIssuerAudience(t *testing.T) {
	t.Parallel()
	v, err := token.NewVerifier(token.Config{Secret: secret, Issuer: "shop", Audience: "push"})
	if err != nil {
		t.Fatal(err)
	}
	c := claims(token.RoleMember, "u1", time.Hour)
	if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, c, secret)); err == nil {
		t.Fatal("token without iss/aud accepted")
	}
	c.Issuer, c.Audience = "shop", jwt.ClaimStrings{"push"}
	if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, c, secret)); err != nil {
		t.Fatalf("good iss/aud refused: %v", err)
	}
	c.Issuer = "other"
	if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, c, secret)); err == nil || !strings.Contains(err.Error(), "issuer") {
		t.Fatalf("wrong issuer: %v", err)
	}
}

func TestNewVerifierConfig(t *testing.T) {
	t.Parallel()
	if _, err := token.NewVerifier(token.Config{}); err == nil || !strings.Contains(err.Error(), "JWT_SECRET") {
		t.Fatalf("missing secret: %v", err)
	}
	if _, err := token.NewVerifier(token.Config{Secret: []byte("short")}); err == nil || !strings.Contains(err.Error(), "32") {
		t.Fatalf("short secret: %v", err)
	}
	if _, err := token.NewVerifier(token.Config{Secret: secret, PublicKeyFile: "x"}); err == nil {
		t.Fatal("both secret and key accepted")
	}
	if _, err := token.NewVerifier(token.Config{PublicKeyFile: filepath.Join(t.TempDir(), "missing.pem")}); err == nil {
		t.Fatal("missing key file accepted")
	}
}

func writePub(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifyPublicKeys(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	c := claims(token.RoleMerchant, "m1", time.Hour)

	rv, err := token.NewVerifier(token.Config{PublicKeyFile: writePub(t, &rsaKey.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rv.Verify(sign(t, jwt.SigningMethodRS256, c, rsaKey)); err != nil {
		t.Fatalf("RS256: %v", err)
	}
	// An HS256 token "signed" with the public key bytes is the classic
	// algorithm-confusion attack: it must be refused.
	pubPEM, _ := os.ReadFile(writePub(t, &rsaKey.PublicKey))
	if _, err := rv.Verify(sign(t, jwt.SigningMethodHS256, c, pubPEM)); err == nil {
		t.Fatal("HS256 token accepted by an RS256 verifier")
	}
	ev, err := token.NewVerifier(token.Config{PublicKeyFile: writePub(t, edPub)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ev.Verify(sign(t, jwt.SigningMethodEdDSA, c, edPriv)); err != nil {
		t.Fatalf("EdDSA: %v", err)
	}
	if _, err := ev.Verify(sign(t, jwt.SigningMethodRS256, c, rsaKey)); err == nil {
		t.Fatal("RS256 token accepted by an EdDSA verifier")
	}
}

func FuzzVerify(f *testing.F) {
	good, _ := token.Mint(secret, token.RoleMerchant, "m1", time.Hour)
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	v, err := token.NewVerifier(token.Config{Secret: secret})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := v.Verify(raw)
		if err != nil {
			if !errors.Is(err, token.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if c.Role == "" || c.Subject == "" || c.ExpiresAt == nil {
			t.Fatalf("accepted incomplete claims %+v", c)
		}
	})
}
