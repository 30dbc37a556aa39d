package loadgen

import (
	"strconv"
	"testing"
)

func TestSeedJob(t *testing.T) {
	t.Parallel()
	tests := map[string]int{
		`{"event":"order","orderSum":3,"msg":"m","order":{"id":"17","merchantId":"m1","date":"2022-06-22","price":36}}`: 17,
		`{"event":"order","orderSum":0}`:                   -1, // the event on connecting
		`{"event":"order","order":{"id":"x1"}}`:            -1,
		`{"event":"order","order":{"id":"-3"}}`:            -1,
		`{"event":"order","order":{"id":""}}`:              -1,
		`{"event":"order","order":{"id":"12`:               -1, // cut short
		`{"event":"other","order":{"id":"5"}}`:             -1,
		`2`:                                                -1,
		`40{"sid":"abc"}`:                                  -1,
		`{"event":"order","order":{"merchantId":"m1"}}`:    -1,
		`{"event":"order","order":{"id":"0","price":1}}`:   0,
		`{"event":"order","order":{"id":"007"}}`:           -1,
		`{"event":"order","msg":"x","order":{"id":"999"}}`: 999,
	}
	for msg, want := range tests {
		if got := seedJob([]byte(msg)); got != want {
			t.Errorf("seedJob(%s) = %d, want %d", msg, got, want)
		}
	}
}

func FuzzSeedJob(f *testing.F) {
	f.Add([]byte(`{"event":"order","orderSum":3,"order":{"id":"17"}}`))
	f.Add([]byte(`{"event":"order","orderSum":0}`))
	f.Add([]byte(`{"event":"order","order":{"id":"99999999999999999999999"}}`))
	f.Fuzz(func(t *testing.T, msg []byte) {
		n := seedJob(msg)
		if n < -1 {
			t.Fatalf("seedJob = %d", n)
		}
		if n >= 0 {
			// A job index came from the digits after the prefix.
			want := `"order":{"id":"` + strconv.Itoa(n)
			if !contains(msg, want) {
				t.Fatalf("seedJob(%q) = %d without %s in it", msg, n, want)
			}
		}
	})
}

func contains(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return true
		}
	}
	return false
}
