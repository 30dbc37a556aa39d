package loadgen

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseVmRSS(t *testing.T) {
	t.Parallel()
	status := "Name:\tgateway\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t7\n"
	got, err := parseVmRSS([]byte(status))
	if err != nil || got != 12345*1024 {
		t.Fatalf("parseVmRSS = %d, %v", got, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tx\n")); err == nil {
		t.Fatal("no VmRSS line: want an error")
	}
	if rss, err := RSS(os.Getpid()); err != nil || rss <= 0 {
		t.Fatalf("RSS(self) = %d, %v", rss, err)
	}
}

func TestParseMetric(t *testing.T) {
	t.Parallel()
	text := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines_extra 99
go_goroutines 10042
gateway_connections{node="a"} 5000 1700000000
`
	if v, err := parseMetric(strings.NewReader(text), "go_goroutines"); err != nil || v != 10042 {
		t.Fatalf("go_goroutines = %v, %v", v, err)
	}
	if v, err := parseMetric(strings.NewReader(text), "gateway_connections"); err != nil || v != 5000 {
		t.Fatalf("labelled = %v, %v", v, err)
	}
	if _, err := parseMetric(strings.NewReader(text), "missing"); err == nil {
		t.Fatal("missing metric: want an error")
	}
}

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	stat := "1234 (gate way) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 1000 200 18446744073709551615\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil || got != 3*time.Second {
		t.Fatalf("parseStatCPU = %v, %v; want 3s", got, err)
	}
	if _, err := ProcCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
}

func TestMetricValuesOneScrape(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("go_goroutines 12\ngo_memstats_heap_inuse_bytes 4096\n"))
	}))
	defer srv.Close()
	v, err := MetricValues(t.Context(), srv.Client(), srv.URL, "go_memstats_heap_inuse_bytes", "go_goroutines")
	if err != nil || v[0] != 4096 || v[1] != 12 {
		t.Fatalf("MetricValues = %v, %v", v, err)
	}
	if _, err := MetricValues(t.Context(), srv.Client(), srv.URL, "absent"); err == nil {
		t.Fatal("absent metric: want an error")
	}
}
