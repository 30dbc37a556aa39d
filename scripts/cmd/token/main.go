// The token command prints a signed JWT for the system's services, for
// trying the stack by hand and for scripts:
//
//	JWT_SECRET=... go run ./scripts/cmd/token -role merchant -sub m1 -ttl 24h
//
// JWT_SECRET (at least 32 bytes) is required. The issuer and audience default
// to JWT_ISSUER and JWT_AUDIENCE, as the services check them when set. The
// token goes to stdout with a newline and nothing else, so
// TOKEN=$(go run ./scripts/cmd/token ...) works.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
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
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: JWT_SECRET=... token -role merchant|member|service -sub ID [-ttl 24h] [-iss I] [-aud A]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	secret := []byte(getenv("JWT_SECRET"))
	if len(secret) == 0 {
		return errors.New("JWT_SECRET: required (the secret the services were started with)")
	}
	if len(secret) < token.MinSecretLen {
		return fmt.Errorf("JWT_SECRET: must be at least %d bytes", token.MinSecretLen)
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
	s, err := token.MintClaims(secret, c)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, s)
	return err
}
