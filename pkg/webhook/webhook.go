// Package webhook is the attention webhook's request as the order API sends
// it and a receiver checks it (PROTOCOL.md, "Receipts and attention"): the
// JSON body, the two headers and the HMAC-SHA256 signature.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Header names of a webhook request.
const (
	HeaderSignature = "X-Orderpush-Signature"
	HeaderEventID   = "X-Orderpush-Event-Id"
)

// Event is the body of a webhook request. The same alert is always sent
// with the same ID.
type Event struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	OrderNo    string `json:"orderNo"`
	MerchantID string `json:"merchantId"`
	PlacedAt   string `json:"placedAt"`
	// Online is the number of the merchant's sockets open at the attempt.
	Online int `json:"online"`
}

// EventID is the id of an order's alert of a type: unique, because an
// alert fires at most once per order and type, and the same on every
// attempt and every replica, so receivers can deduplicate by it.
func EventID(alertType, orderNo string) string { return alertType + "/" + orderNo }

const sigPrefix = "sha256="

// Sign returns the X-Orderpush-Signature value of body: "sha256=" and the
// lowercase hex HMAC-SHA256 of the body's exact bytes with secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return sigPrefix + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header is body's signature with secret, in
// constant time. It is what a receiver does (the tests' receiver,
// webhooktest, uses it).
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
