package wire_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"orderpush/pkg/wire"
)

func TestParseCents(t *testing.T) {
	t.Parallel()
	ok := map[string]wire.Cents{
		"0": 0, "36": 3600, "36.5": 3650, "36.50": 3650, "36.05": 3605, "0.01": 1,
		"1e2": 10000, "1.5E1": 1500, "1.230": 123, "0.0": 0, "100000000000": 1e13,
		"12345e-2": 12345, "0e5": 0,
	}
	for in, want := range ok {
		got, err := wire.ParseCents([]byte(in))
		if err != nil || got != want {
			t.Errorf("ParseCents(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	bad := []string{
		"", "-1", "-0", "1.234", "0.001", "1e-3", `"36"`, "01", "1.", ".5", "1e", "1e99",
		"100000000000.01", "1000000000000", "NaN", "Infinity", "0x10", "1_0", "true", "null",
		"1.2.3", "+1",
	}
	for _, in := range bad {
		if got, err := wire.ParseCents([]byte(in)); err == nil {
			t.Errorf("ParseCents(%q) = %d, want error", in, got)
		}
	}
}

func TestCentsJSONRoundTrip(t *testing.T) {
	t.Parallel()
	for _, c := range []wire.Cents{0, 1, 10, 99, 100, 3600, 3650, 3605, 123456789, wire.MaxCents} {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var back wire.Cents
		if err := json.Unmarshal(b, &back); err != nil || back != c {
			t.Errorf("%d -> %s -> %d, %v", c, b, back, err)
		}
	}
	if b, _ := json.Marshal(wire.Cents(3650)); string(b) != "36.5" {
		t.Errorf("3650 cents encodes as %s, want 36.5", b)
	}
}

func FuzzParseCents(f *testing.F) {
	for _, s := range []string{"36", "36.5", "0.01", "1e2", "1.234", "-1", "1e-3", "99999999999.99"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := wire.ParseCents([]byte(s))
		if err != nil {
			return
		}
		if c < 0 || c > wire.MaxCents {
			t.Fatalf("%q accepted as %d, out of range", s, c)
		}
		// Accepted input is a JSON number, and re-encoding round-trips.
		var f64 float64
		if json.Unmarshal([]byte(s), &f64) != nil {
			t.Fatalf("%q accepted but is not a JSON number", s)
		}
		b, _ := json.Marshal(c)
		back, err := wire.ParseCents(b)
		if err != nil || back != c {
			t.Fatalf("%q -> %d -> %s -> %d, %v", s, c, b, back, err)
		}
	})
}

func TestValidDate(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"2022-06-22", "2024-02-29", "1999-12-31"} {
		if !wire.ValidDate(s) {
			t.Errorf("%s should be valid", s)
		}
	}
	for _, s := range []string{"2023-02-29", "2022-13-01", "2022-6-22", "22-06-22", "2022-06-22T00:00:00Z", "", "2022-00-10", "2022-04-31"} {
		if wire.ValidDate(s) {
			t.Errorf("%q should be invalid", s)
		}
	}
}

func TestValidIDs(t *testing.T) {
	t.Parallel()
	if !wire.ValidMerchantID("m1") || !wire.ValidMerchantID(strings.Repeat("a", 64)) || !wire.ValidMerchantID("A_b-9") {
		t.Error("valid merchant ids refused")
	}
	for _, s := range []string{"", strings.Repeat("a", 65), "m 1", "m/1", "m:1", "商家", "m\n"} {
		if wire.ValidMerchantID(s) {
			t.Errorf("merchant id %q accepted", s)
		}
	}
	if wire.ValidUserID(strings.Repeat("u", 33)) || !wire.ValidUserID(strings.Repeat("u", 32)) {
		t.Error("user id length bound wrong")
	}
}

func TestOrderNo(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1764127078123)
	no := wire.NewOrderNo("u1001", now)
	if len(no) != len("u1001")+17 || !strings.HasPrefix(no, "u10011764127078123") {
		t.Fatalf("order number %q: want u1001 + 13 ms digits + 4 digits", no)
	}
	if !wire.ValidOrderNo(no) {
		t.Fatalf("%q not valid", no)
	}
	for _, s := range []string{"", "u1", "1764127078123000", "u 1764127078123000x", "u176412707812300a0"} {
		if wire.ValidOrderNo(s) {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestOrderNoSpread(t *testing.T) {
	t.Parallel()
	// Within one millisecond only the 4 random digits differ: concurrent
	// generation must spread over them (the store retries real collisions).
	now := time.Now()
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				no := wire.NewOrderNo("u1", now)
				mu.Lock()
				seen[no]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// 800 draws from 10,000 values: expect about 31 collisions; far more
	// means the digits are not random.
	if len(seen) < 700 {
		t.Fatalf("only %d distinct order numbers out of 800", len(seen))
	}
}

func TestOrderJSON(t *testing.T) {
	t.Parallel()
	o := wire.Order{
		OrderNo: "u100117641270781231234", MerchantID: "m1", UserID: "u1001", Date: "2022-06-22",
		Price: 3650, Status: wire.StatusPending, CreatedAt: time.Date(2026, 11, 26, 3, 17, 58, 123456789, time.FixedZone("x", 3600)),
	}
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"orderNo":"u100117641270781231234","merchantId":"m1","userId":"u1001","date":"2022-06-22","price":36.5,"status":"pending","createdAt":"2026-11-26T02:17:58.123Z","deliveredAt":null,"seenAt":null}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	var back wire.Order
	if err := json.Unmarshal(b, &back); err != nil || back.Price != o.Price || !back.CreatedAt.Equal(o.CreatedAt.Truncate(time.Millisecond)) ||
		back.DeliveredAt != nil || back.SeenAt != nil {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	// Receipts are written like createdAt, in UTC with milliseconds.
	d, s := o.CreatedAt.Add(1500*time.Millisecond), o.CreatedAt.Add(time.Minute)
	o.DeliveredAt, o.SeenAt = &d, &s
	b, _ = json.Marshal(o)
	if !strings.HasSuffix(string(b), `"createdAt":"2026-11-26T02:17:58.123Z","deliveredAt":"2026-11-26T02:17:59.623Z","seenAt":"2026-11-26T02:18:58.123Z"}`) {
		t.Fatalf("receipts: %s", b)
	}
}
