package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"orderpush/pkg/token"
)

const secret = "0123456789abcdef0123456789abcdef-test"

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestPrintsAVerifiableToken(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	e := env(map[string]string{"JWT_SECRET": secret, "JWT_ISSUER": "orderpush", "JWT_AUDIENCE": "shops"})
	if err := run([]string{"-role", "member", "-sub", "u1001", "-ttl", "1h"}, e, &out, &errb); err != nil {
		t.Fatalf("run: %v (%s)", err, errb.String())
	}
	raw := strings.TrimSuffix(out.String(), "\n")
	if strings.ContainsAny(raw, " \n") {
		t.Fatalf("stdout is not one token line: %q", out.String())
	}
	v, err := token.NewVerifier(token.Config{Secret: []byte(secret), Issuer: "orderpush", Audience: "shops"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(raw)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if c.Role != token.RoleMember || c.Subject != "u1001" {
		t.Fatalf("claims %+v", c)
	}
	if d := c.ExpiresAt.Sub(c.IssuedAt.Time); d.Hours() != 1 {
		t.Fatalf("ttl %s, want 1h", d)
	}
}

func TestRefuses(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"no secret":      {[]string{"-sub", "m1"}, nil, "JWT_SECRET: required"},
		"short secret":   {[]string{"-sub", "m1"}, map[string]string{"JWT_SECRET": "short"}, "at least 32"},
		"weak secret":    {[]string{"-sub", "m1"}, map[string]string{"JWT_SECRET": strings.Repeat("ab", 20)}, "distinct"},
		"missing key":    {[]string{"-sub", "m1", "-key", "/nonexistent/jwt.pem"}, nil, "-key"},
		"bad role":       {[]string{"-role", "admin", "-sub", "m1"}, map[string]string{"JWT_SECRET": secret}, "-role"},
		"bad merchant":   {[]string{"-sub", "m 1"}, map[string]string{"JWT_SECRET": secret}, "merchant id"},
		"no sub":         {nil, map[string]string{"JWT_SECRET": secret}, "merchant id"},
		"service no sub": {[]string{"-role", "service"}, map[string]string{"JWT_SECRET": secret}, "service's name"},
		"bad ttl":        {[]string{"-sub", "m1", "-ttl", "-1h"}, map[string]string{"JWT_SECRET": secret}, "-ttl"},
		"extra arg":      {[]string{"-sub", "m1", "x"}, map[string]string{"JWT_SECRET": secret}, "unexpected"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var out, errb bytes.Buffer
			err := run(tc.args, env(tc.env), &out, &errb)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to mention %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Fatalf("printed %q on error", out.String())
			}
		})
	}
}

func TestGenSecret(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	if err := run([]string{"-gen-secret"}, env(nil), &out, &errb); err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(out.String(), "\n")
	if err := token.CheckSecret([]byte(s)); err != nil || len(s) != 64 {
		t.Fatalf("generated %q: %v", s, err)
	}
}

// TestGenKeyPairAndSign: the pair is written with the private key 0600,
// a token signed with -key verifies against the public key file, and a
// second -gen-keypair does not overwrite it.
func TestGenKeyPairAndSign(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "keys")
	var out, errb bytes.Buffer
	if err := run([]string{"-gen-keypair", dir}, env(nil), &out, &errb); err != nil {
		t.Fatal(err)
	}
	priv, pub := filepath.Join(dir, "jwt.pem"), filepath.Join(dir, "jwt.pub.pem")
	st, err := os.Stat(priv)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key %v mode %v", err, st.Mode())
	}
	out.Reset()
	if err := run([]string{"-key", priv, "-role", "service", "-sub", "gateway"}, env(nil), &out, &errb); err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(token.Config{PublicKeyFile: pub})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := v.Verify(strings.TrimSpace(out.String())); err != nil || c.Role != "service" {
		t.Fatalf("verify: %+v %v", c, err)
	}
	if err := run([]string{"-gen-keypair", dir}, env(nil), &out, &errb); err == nil {
		t.Fatal("an existing key pair was overwritten")
	}
}
