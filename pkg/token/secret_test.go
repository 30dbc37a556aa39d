package token_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"orderpush/pkg/token"
)

func TestCheckSecret(t *testing.T) {
	t.Parallel()
	refused := map[string]string{
		"short":         "0123456789abcdef",
		"one byte":      strings.Repeat("a", 32),
		"nine distinct": strings.Repeat("123456789", 4),
		"placeholder":   "change-me-this-is-a-placeholder-secret-of-48-bytes",
	}
	for name, s := range refused {
		err := token.CheckSecret([]byte(s))
		if !errors.Is(err, token.ErrWeakSecret) || !strings.Contains(err.Error(), "JWT_SECRET") {
			t.Errorf("%s: err = %v, want ErrWeakSecret naming JWT_SECRET", name, err)
		}
		if err != nil && strings.Contains(err.Error(), s) {
			t.Errorf("%s: the message shows the secret", name)
		}
		if _, err := token.NewVerifier(token.Config{Secret: []byte(s)}); !errors.Is(err, token.ErrWeakSecret) {
			t.Errorf("%s: NewVerifier err = %v", name, err)
		}
	}
	for _, s := range []string{"0123456789abcdef0123456789abcdef", strings.Repeat("0123456789", 4), token.NewSecret()} {
		if err := token.CheckSecret([]byte(s)); err != nil {
			t.Errorf("CheckSecret(%q) = %v", s, err)
		}
	}
	if a, b := token.NewSecret(), token.NewSecret(); a == b || len(a) != 64 {
		t.Errorf("NewSecret: %q %q", a, b)
	}
}

func TestMissingIssuerAudience(t *testing.T) {
	t.Parallel()
	v, err := token.NewVerifier(token.Config{Secret: secret, Issuer: "shop", Audience: "push"})
	if err != nil {
		t.Fatal(err)
	}
	c := claims(token.RoleMember, "u1", time.Hour)
	cases := map[string]struct {
		iss  string
		aud  jwt.ClaimStrings
		want string
	}{
		"no iss":  {"", jwt.ClaimStrings{"push"}, "iss is required"},
		"no aud":  {"shop", nil, "aud is required"},
		"neither": {"", nil, "iss and aud are required"},
	}
	for name, tc := range cases {
		c.Issuer, c.Audience = tc.iss, tc.aud
		_, err := v.Verify(sign(t, jwt.SigningMethodHS256, c, secret))
		if err == nil || !strings.HasSuffix(err.Error(), tc.want) || strings.Contains(err.Error(), "exp") {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

func TestKeyPairMint(t *testing.T) {
	t.Parallel()
	priv, pub, err := token.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	privFile, pubFile := filepath.Join(dir, "jwt.pem"), filepath.Join(dir, "jwt.pub.pem")
	if err := os.WriteFile(privFile, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubFile, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	key, err := token.ReadPrivateKey(privFile)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := token.MintKey(key, claims(token.RoleService, "gateway", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(token.Config{PublicKeyFile: pubFile})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := v.Verify(raw); err != nil || c.Subject != "gateway" {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
	// The same claims under HS256 are refused by the EdDSA verifier.
	hs, _ := token.MintKey(secret, claims(token.RoleService, "gateway", time.Hour))
	if _, err := v.Verify(hs); err == nil {
		t.Fatal("HS256 token accepted by an EdDSA verifier")
	}
	if _, err := token.ReadPrivateKey(pubFile); err == nil {
		t.Fatal("a public key read as a private key")
	}
}
