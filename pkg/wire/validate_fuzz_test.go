package wire_test

import (
	"strings"
	"testing"
	"time"

	"orderpush/pkg/wire"
)

func nameChars(s string) bool {
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == ""
}

// FuzzValidMerchantID: accepted ids are 1-64 characters of [A-Za-z0-9_-]
// (so safe in Redis keys, channels and URLs); user ids the same with 32.
func FuzzValidMerchantID(f *testing.F) {
	for _, s := range []string{"m1", "", "m/1", strings.Repeat("a", 64), strings.Repeat("a", 65), "m 1", "m\x00", "Ünïcode", "{merchant:x}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ok := wire.ValidMerchantID(s)
		want := len(s) >= 1 && len(s) <= 64 && nameChars(s)
		if ok != want {
			t.Fatalf("ValidMerchantID(%q) = %v, want %v", s, ok, want)
		}
		if u := wire.ValidUserID(s); u != (want && len(s) <= 32) {
			t.Fatalf("ValidUserID(%q) = %v", s, u)
		}
	})
}

// FuzzValidOrderNo: an accepted order number is a valid user id followed by
// 17 digits; every number NewOrderNo makes for a valid user id is accepted.
func FuzzValidOrderNo(f *testing.F) {
	for _, s := range []string{"u100117956594781230001", "u1", "12345678901234567", "u1_x12345678901234567", "u/112345678901234567", "u112345678901234567x"} {
		f.Add(s, int64(1795659478123))
	}
	f.Fuzz(func(t *testing.T, s string, ms int64) {
		if wire.ValidOrderNo(s) {
			if len(s) <= 17 || strings.Trim(s[len(s)-17:], "0123456789") != "" || !wire.ValidUserID(s[:len(s)-17]) {
				t.Fatalf("ValidOrderNo(%q) accepted a malformed number", s)
			}
		}
		if wire.ValidUserID(s) && ms >= 0 && ms < 1e13 {
			no := wire.NewOrderNo(s, time.UnixMilli(ms))
			if !wire.ValidOrderNo(no) {
				t.Fatalf("NewOrderNo(%q, %d) = %q, refused by ValidOrderNo", s, ms, no)
			}
		}
	})
}

// FuzzValidDate: an accepted date is YYYY-MM-DD of a real day and formats
// back to itself.
func FuzzValidDate(f *testing.F) {
	for _, s := range []string{"2022-06-22", "2022-02-29", "2024-02-29", "2022-6-22", "22-06-2022", "2022-06-22T00:00:00Z", "0000-01-01", "9999-12-31", "2022-13-01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !wire.ValidDate(s) {
			return
		}
		d, err := time.Parse(time.DateOnly, s)
		if err != nil || d.Format(time.DateOnly) != s || len(s) != 10 {
			t.Fatalf("ValidDate(%q) accepted: %v %v", s, d, err)
		}
	})
}
