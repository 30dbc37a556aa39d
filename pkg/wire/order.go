package wire

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Order statuses.
const (
	StatusPending   = "pending"
	StatusProcessed = "processed"
)

// Order is the order object of PROTOCOL.md. Price is kept in integer cents.
type Order struct {
	OrderNo    string    `json:"orderNo" db:"order_no"`
	MerchantID string    `json:"merchantId" db:"merchant_id"`
	UserID     string    `json:"userId" db:"user_id"`
	Date       string    `json:"date" db:"date"`
	Price      Cents     `json:"price" db:"price_cents"`
	Status     string    `json:"status" db:"status"`
	CreatedAt  time.Time `json:"createdAt" db:"created_at"`
	// DeliveredAt is the first time a client of the merchant acked a seq at
	// or above the order's event; SeenAt the first seen (or processing).
	// Nil until then, written as null (PROTOCOL.md "Receipts and
	// attention").
	DeliveredAt *time.Time `json:"deliveredAt"`
	SeenAt      *time.Time `json:"seenAt"`
}

// TimeLayout is how every timestamp of the contract is written: RFC 3339
// in UTC with milliseconds, "2026-11-26T03:17:58.123Z".
const TimeLayout = "2006-01-02T15:04:05.000Z"

// MarshalJSON writes createdAt, deliveredAt and seenAt in UTC with
// millisecond precision, as in the contract's example; a missing receipt
// is null.
func (o Order) MarshalJSON() ([]byte, error) {
	type plain Order
	return Marshal(struct {
		plain
		CreatedAt   string  `json:"createdAt"`
		DeliveredAt *string `json:"deliveredAt"`
		SeenAt      *string `json:"seenAt"`
	}{plain(o), o.CreatedAt.UTC().Format(TimeLayout), timeOrNull(o.DeliveredAt), timeOrNull(o.SeenAt)})
}

// timeOrNull formats t like createdAt, or nil (null) when t is nil.
func timeOrNull(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := t.UTC().Format(TimeLayout)
	return &s
}

// Cents is an amount of money in hundredths. In JSON it is a number with at
// most two decimal places: 3650 is written 36.5.
type Cents int64

// MaxCents bounds prices so that every value fits a float64 exactly and any
// SQL integer column: 10^13 cents is 100 billion.
const MaxCents = Cents(1e13)

// ErrBadPrice is wrapped by every price parsing error.
var ErrBadPrice = errors.New("price must be a number >= 0 with at most 2 decimal places")

// MarshalJSON writes the shortest decimal form: 36, 36.5, 36.05.
func (c Cents) MarshalJSON() ([]byte, error) {
	v := int64(c)
	neg := v < 0
	if neg {
		v = -v
	}
	s := strconv.FormatInt(v/100, 10)
	switch f := v % 100; {
	case f == 0:
	case f%10 == 0:
		s += "." + strconv.FormatInt(f/10, 10)
	default:
		s += fmt.Sprintf(".%02d", f)
	}
	if neg {
		s = "-" + s
	}
	return []byte(s), nil
}

// UnmarshalJSON accepts a JSON number (not a string) in plain or exponent
// form whose value has at most two decimal places, from 0 to MaxCents. It
// parses the digits exactly: no float rounding ever decides validity.
func (c *Cents) UnmarshalJSON(b []byte) error {
	v, err := ParseCents(b)
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// ParseCents parses a JSON number text as an amount in cents.
func ParseCents(b []byte) (Cents, error) {
	if len(b) == 0 || b[0] == '-' {
		return 0, ErrBadPrice
	}
	mant, exp := b, 0
	if i := bytes.IndexAny(b, "eE"); i >= 0 {
		e, err := strconv.Atoi(string(b[i+1:]))
		if err != nil || e < -20 || e > 20 {
			return 0, ErrBadPrice
		}
		mant, exp = b[:i], e
	}
	intPart, frac := mant, []byte(nil)
	if i := bytes.IndexByte(mant, '.'); i >= 0 {
		intPart, frac = mant[:i], mant[i+1:]
		if len(frac) == 0 {
			return 0, ErrBadPrice
		}
	}
	if len(intPart) == 0 || (len(intPart) > 1 && intPart[0] == '0') {
		return 0, ErrBadPrice
	}
	digits := append(append([]byte{}, intPart...), frac...)
	for _, d := range digits {
		if d < '0' || d > '9' {
			return 0, ErrBadPrice
		}
	}
	// value = digits * 10^(exp - len(frac)); cents = value * 100.
	shift := exp - len(frac) + 2
	for shift < 0 {
		if digits[len(digits)-1] != '0' {
			return 0, ErrBadPrice // more than two decimals
		}
		digits = digits[:len(digits)-1]
		shift++
		if len(digits) == 0 {
			return 0, nil
		}
	}
	digits = bytes.TrimLeft(digits, "0")
	if len(digits)+shift > 14 {
		return 0, ErrBadPrice
	}
	var v int64
	for _, d := range digits {
		v = v*10 + int64(d-'0')
	}
	for ; shift > 0; shift-- {
		v *= 10
	}
	if Cents(v) > MaxCents {
		return 0, ErrBadPrice
	}
	return Cents(v), nil
}

// ValidDate reports whether s is a real calendar date written YYYY-MM-DD.
func ValidDate(s string) bool {
	if len(s) != 10 {
		return false
	}
	t, err := time.Parse(time.DateOnly, s)
	return err == nil && t.Format(time.DateOnly) == s
}

// ValidMerchantID reports whether s is 1-64 characters of [A-Za-z0-9_-].
func ValidMerchantID(s string) bool { return validName(s, 64) }

// ValidUserID reports whether s is 1-32 characters of [A-Za-z0-9_-].
func ValidUserID(s string) bool { return validName(s, 32) }

func validName(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// orderNoSuffix is the 13 millisecond digits plus 4 random digits that follow
// the user id in an order number.
const orderNoSuffix = 17

// NewOrderNo returns userID + 13-digit Unix milliseconds of now + 4 random
// digits. Uniqueness is the store's job (a collision is retried there).
func NewOrderNo(userID string, now time.Time) string {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return fmt.Sprintf("%s%013d%04d", userID, now.UnixMilli(), binary.LittleEndian.Uint64(r[:])%10000)
}

// ValidOrderNo reports whether s has the shape of an order number: a valid
// user id followed by 17 digits.
func ValidOrderNo(s string) bool {
	if len(s) <= orderNoSuffix {
		return false
	}
	for i := len(s) - orderNoSuffix; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return ValidUserID(s[:len(s)-orderNoSuffix])
}
