package attention

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Header names of a webhook request (PROTOCOL.md, "Receipts and attention").
const (
	HeaderSignature = "X-Orderpush-Signature"
	HeaderEventID   = "X-Orderpush-Event-Id"
)

const sigPrefix = "sha256="

// Sign returns the X-Orderpush-Signature value of body: "sha256=" and the
// lowercase hex HMAC-SHA256 of the body's exact bytes with secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return sigPrefix + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header is body's signature with secret, in
// constant time. It is what a receiver does; the tests and the README's
// example receiver use it.
func Verify(secret, body []byte, header string) bool {
	hexSig, ok := strings.CutPrefix(header, sigPrefix)
	if !ok || len(hexSig) != 2*sha256.Size {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}
