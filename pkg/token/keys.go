package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/golang-jwt/jwt/v5"
)

// GenerateKeyPair makes an Ed25519 key pair as PEM: the private key in
// PKCS #8 ("PRIVATE KEY"), the public key in PKIX ("PUBLIC KEY"), the form
// JWT_PUBLIC_KEY_FILE reads.
func GenerateKeyPair() (privPEM, pubPEM []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), nil
}

// ReadPrivateKey reads a PEM private key (PKCS #8 Ed25519 or RSA, or PKCS
// #1 RSA) for MintKey.
func ReadPrivateKey(path string) (any, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	switch k.(type) {
	case ed25519.PrivateKey, *rsa.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("unsupported key type %T (want Ed25519 or RSA)", k)
	}
}

// MintKey signs c with key: an Ed25519 private key (EdDSA), an RSA private
// key (RS256) or an HS256 secret ([]byte).
func MintKey(key any, c Claims) (string, error) {
	var m jwt.SigningMethod
	switch key.(type) {
	case ed25519.PrivateKey:
		m = jwt.SigningMethodEdDSA
	case *rsa.PrivateKey:
		m = jwt.SigningMethodRS256
	case []byte:
		m = jwt.SigningMethodHS256
	default:
		return "", fmt.Errorf("mint token: unsupported key type %T", key)
	}
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return s, nil
}

// readPEM reads the first PEM block of the file at path.
func readPEM(path string) (*pem.Block, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	return block, nil
}
