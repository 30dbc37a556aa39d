// The token command prints a signed JWT for the system's services, for
// trying the stack by hand and for scripts, and makes the keys to sign them:
//
//	JWT_SECRET=... go run ./scripts/cmd/token -role merchant -sub m1 -ttl 24h
//	go run ./scripts/cmd/token -key jwt.pem -role service -sub gateway -ttl 8760h
//	go run ./scripts/cmd/token -gen-secret          # a fresh JWT_SECRET
//	go run ./scripts/cmd/token -gen-keypair DIR     # DIR/jwt.pem (0600) and DIR/jwt.pub.pem
//
// Signing needs JWT_SECRET (HS256, refused when weak, as the services
// refuse it) or -key / JWT_PRIVATE_KEY_FILE (an Ed25519 or RSA private key:
// EdDSA or RS256; the services then hold only the public key). The issuer
// and audience default to JWT_ISSUER and JWT_AUDIENCE, as the services
// check them when set. The token goes to stdout with a newline and nothing
// else, so TOKEN=$(go run ./scripts/cmd/token ...) works.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "token:", err)
		}
		os.Exit(2)
	}
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	role := fs.String("role", token.RoleMerchant, "merchant, member or service")
	sub := fs.String("sub", "", "subject: the merchant id, user id or service name (required)")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime of the token")
	iss := fs.String("iss", getenv("JWT_ISSUER"), "issuer claim (default $JWT_ISSUER)")
	aud := fs.String("aud", getenv("JWT_AUDIENCE"), "audience claim (default $JWT_AUDIENCE)")
	keyFile := fs.String("key", getenv("JWT_PRIVATE_KEY_FILE"), "PEM private key to sign with (Ed25519: EdDSA, RSA: RS256) instead of JWT_SECRET (default $JWT_PRIVATE_KEY_FILE)")
	genSecret := fs.Bool("gen-secret", false, "print a fresh random JWT_SECRET and exit")
	genKeyPair := fs.String("gen-keypair", "", "write a fresh Ed25519 key pair to `DIR`/jwt.pem (private, mode 0600) and DIR/jwt.pub.pem (for JWT_PUBLIC_KEY_FILE) and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: JWT_SECRET=... token -role merchant|member|service -sub ID [-ttl 24h] [-iss I] [-aud A]")
		fmt.Fprintln(stderr, "       token -key jwt.pem -role ... -sub ID | token -gen-secret | token -gen-keypair DIR")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case *genSecret:
		_, err := fmt.Fprintln(stdout, token.NewSecret())
		return err
	case *genKeyPair != "":
		return writeKeyPair(*genKeyPair, stdout)
	}
	key, err := signingKey(*keyFile, getenv)
	if err != nil {
		return err
	}
	if *ttl <= 0 {
		return errors.New("-ttl must be positive")
	}
	switch *role {
	case token.RoleMerchant:
		if !wire.ValidMerchantID(*sub) {
			return fmt.Errorf("-sub %q is not a merchant id (1-64 of A-Z a-z 0-9 _ -)", *sub)
		}
	case token.RoleMember:
		if !wire.ValidUserID(*sub) {
			return fmt.Errorf("-sub %q is not a user id (1-32 of A-Z a-z 0-9 _ -)", *sub)
		}
	case token.RoleService:
		if *sub == "" {
			return errors.New("-sub is required: the calling service's name")
		}
	default:
		return fmt.Errorf("-role %q: want merchant, member or service", *role)
	}
	now := time.Now()
	c := token.Claims{Role: *role, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   *sub,
		Issuer:    *iss,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(*ttl)),
	}}
	if *aud != "" {
		c.Audience = jwt.ClaimStrings{*aud}
	}
	s, err := token.MintKey(key, c)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, s)
	return err
}

// signingKey is the private key file's key, else JWT_SECRET (checked as
// the services check it: a token signed with a secret they refuse is no
// use).
func signingKey(keyFile string, getenv func(string) string) (any, error) {
	if keyFile != "" {
		k, err := token.ReadPrivateKey(keyFile)
		if err != nil {
			return nil, fmt.Errorf("-key %s: %w", keyFile, err)
		}
		return k, nil
	}
	secret := []byte(getenv("JWT_SECRET"))
	if len(secret) == 0 {
		return nil, errors.New("JWT_SECRET: required (the secret the services were started with), or -key with a private key file")
	}
	if err := token.CheckSecret(secret); err != nil {
		return nil, err
	}
	return secret, nil
}

// writeKeyPair writes dir/jwt.pem (0600) and dir/jwt.pub.pem, refusing to
// overwrite either, and says where they went on stdout.
func writeKeyPair(dir string, stdout io.Writer) error {
	priv, pub, err := token.GenerateKeyPair()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	privFile, pubFile := filepath.Join(dir, "jwt.pem"), filepath.Join(dir, "jwt.pub.pem")
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{privFile, priv, 0o600}, {pubFile, pub, 0o644}} {
		fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			return fmt.Errorf("-gen-keypair: %w", err)
		}
		if _, err := fh.Write(f.data); err != nil {
			fh.Close()
			return fmt.Errorf("-gen-keypair: %w", err)
		}
		if err := fh.Close(); err != nil {
			return fmt.Errorf("-gen-keypair: %w", err)
		}
	}
	_, err = fmt.Fprintf(stdout, "private key (token issuer only): %s\npublic key (JWT_PUBLIC_KEY_FILE of both services): %s\n", privFile, pubFile)
	return err
}
