package loadgen

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"orderpush/scripts/launch"
)

// TestSmokeBench runs every scenario at a tiny size against a launched stack:
// a real redis-server, the order API on SQLite and then on PostgreSQL, and
// two gateway processes; idle, latency and fanout once per transport (ws,
// SSE, socket.io). It checks that each scenario produced its figures, that
// nothing was lost and that every limit refused its attacker; it asserts no
// timing.
func TestSmokeBench(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	root, err := launch.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bins, err := launch.Build(ctx, root, filepath.Join(dir, "bin"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := StartStack(ctx, StackConfig{Dir: dir, Binaries: bins})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out, js bytes.Buffer
	cfg := BenchConfig{
		Runs:      1,
		Databases: []string{DBSQLite, DBPostgres},
		Idle:      IdleConfig{Sockets: 60, Merchants: 12, Settle: 50 * time.Millisecond, Drain: 20 * time.Second},
		Latency:   LatencyConfig{Sockets: 60, Merchants: 12, Rate: 100, Duration: time.Second, Workers: 8, Drain: 20 * time.Second},
		Fanout:    FanoutConfig{Sockets: 30, Duration: 500 * time.Millisecond, Window: 16, Batch: true, Drain: 20 * time.Second},
		Orders:    OrdersConfig{Clients: 4, Duration: 500 * time.Millisecond, Merchants: 8},
		Churn: ChurnConfig{Stable: 30, Merchants: 6, ChurnRate: 20, Lifetime: 200 * time.Millisecond,
			Rate: 50, Duration: time.Second, Drain: 20 * time.Second},
		Transports: AllTransports,
		Abuse: AbuseConfig{Sockets: 40, Merchants: 8, Rate: 50, Duration: time.Second, Drain: 20 * time.Second,
			ConnectRate: 400, FloodSockets: 10, OrderRate: 100, SilentSockets: 10,
			PingInterval: time.Second, PingTimeout: 2 * time.Second, Settle: 200 * time.Millisecond},
		ProfileDir: filepath.Join(dir, "profiles"),
		Out:        &out,
		JSON:       &js,
	}
	rows, err := Bench(ctx, st, cfg)
	t.Log(out.String())
	if err != nil {
		for _, p := range []string{"gateway-0", "orderapi"} {
			if logs, _ := filepath.Glob(filepath.Join(dir, p+"*.log")); len(logs) > 0 {
				b, _ := os.ReadFile(logs[len(logs)-1])
				t.Logf("--- %s ---\n%s", logs[len(logs)-1], tail(b, 4000))
			}
		}
		t.Fatalf("bench: %v", err)
	}
	got := map[string]Row{}
	for _, r := range rows {
		got[r.Scenario+"/"+r.Variant+"/"+r.Name] = r
	}
	mustHave := []string{
		"idle//connects_per_s", "idle//rss_per_socket", "idle//goroutines_per_socket", "idle//verify_missing",
		"latency/redis/p99", "latency/sqlite/p99", "latency/postgres/p99",
		"latency/sqlite/delivered_p99", "latency/sqlite/seen_p99", "latency/postgres/delivered_p99", "latency/postgres/seen_p99",
		"fanout/batch/deliveries_per_s",
		"orders/sqlite/orders_per_s", "orders/postgres/orders_per_s",
		"churn/http/stable_lost", "churn/http/presence_mismatch",
		"abuse/postgres/p99", "abuse/postgres/gateway_rss", "abuse/postgres/connect_tried_per_s",
		// The silent peers left presence (within three times the contract's
		// bound: whether the bound itself held is a timing, reported only).
		"abuse/postgres/silent_gone_after",
	}
	zero := []string{"idle//verify_missing", "latency/redis/lost", "latency/sqlite/lost", "latency/postgres/lost",
		"latency/redis/dup_or_reordered", "latency/sqlite/undelivered", "latency/sqlite/unseen",
		"latency/postgres/undelivered", "latency/postgres/unseen", "fanout/batch/lost", "churn/http/stable_lost",
		"churn/http/churn_dup_or_reordered", "churn/http/presence_mismatch", "orders/sqlite/failed", "orders/postgres/failed",
		"abuse/postgres/lost", "abuse/postgres/base_lost", "abuse/postgres/honest_refusals"}
	for _, tr := range []string{TransportSSE, TransportSocketIO} {
		mustHave = append(mustHave, "idle/"+tr+"/rss_per_socket", "idle/"+tr+"/goroutines_per_socket", "idle/"+tr+"/connects_per_s",
			"latency/redis-"+tr+"/p99", "fanout/"+tr+"/deliveries_per_s")
		zero = append(zero, "idle/"+tr+"/verify_missing", "idle/"+tr+"/failed", "latency/redis-"+tr+"/lost",
			"latency/redis-"+tr+"/dup_or_reordered", "fanout/"+tr+"/lost", "fanout/"+tr+"/dup_or_reordered")
	}
	for _, k := range mustHave {
		r, ok := got[k]
		if !ok {
			t.Errorf("no %s in the results", k)
			continue
		}
		if strings.HasSuffix(k, "_per_s") && !(r.Median > 0) {
			t.Errorf("%s = %v, want > 0", k, r.Median)
		}
	}
	if r := got["latency/redis/p99"]; !(r.FloorMedian > 0) {
		t.Errorf("latency/redis p99 has no floor: %+v", r)
	}
	if r := got["fanout/batch/deliveries_per_s"]; !(r.FloorMedian > 0) {
		t.Errorf("fanout has no floor: %+v", r)
	}
	// Correctness, not speed: every frame reached every socket, exactly once.
	for _, k := range zero {
		if r, ok := got[k]; ok && r.Median != 0 {
			t.Errorf("%s = %v, want 0", k, r.Median)
		}
	}
	// Every limit refused its attacker (the abuse scenario runs the last
	// database of the list, with the limits on).
	for _, k := range []string{"refused_connect_rate", "frames_limited", "flood_closes", "dead_peer_closes", "orders_limited"} {
		if r := got["abuse/postgres/"+k]; !(r.Median > 0) {
			t.Errorf("abuse/postgres/%s = %v, want > 0", k, r.Median)
		}
	}
	if r := got["latency/sqlite/samples"]; r.Median != r.Median || r.Median < 1 {
		t.Errorf("latency/sqlite has no samples: %+v", r)
	}
	if !strings.Contains(out.String(), "summary: median of 1 runs") {
		t.Error("no summary table in the output")
	}
	if !strings.Contains(out.String(), "transports side by side") || !strings.Contains(out.String(), "fanout: deliveries/s") {
		t.Error("no side-by-side transport table in the output")
	}
	if !strings.Contains(js.String(), `"metric":"deliveries_per_s"`) {
		t.Error("no JSON line for deliveries_per_s")
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
