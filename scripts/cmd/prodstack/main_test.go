package main

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"orderpush/scripts/launch"
)

// TestRunPrintsAWorkingStackAndStops runs the command on a free port with
// SQLite, follows the printed dashboard link through nginx, and stops it.
func TestRunPrintsAWorkingStackAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out launch.Output
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-port", "0", "-db", "sqlite", "-merchant", "shop7"}, &out) }()

	link := regexp.MustCompile(`dashboard\s+(http://127\.0\.0\.1:\d+)/\?token=(\S+)`)
	deadline := time.Now().Add(5 * time.Minute)
	var m []string
	for m == nil {
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dashboard link within 5 min:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond) // poll interval, bounded by the deadline
		m = link.FindStringSubmatch(out.String())
	}
	resp, err := http.Get(m[1] + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("dashboard through nginx: %s", resp.Status)
	}
	for _, want := range []string{"merchant token (shop7)", "member token (u1001)", "curl -s -X POST " + m[1] + "/api/orders", "gateway3"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("banner lacks %q", want)
		}
	}

	// The printed merchant takes orders: it was registered at start.
	mem := regexp.MustCompile(`member token \(u1001\):\s+(\S+)`).FindStringSubmatch(out.String())
	if mem == nil {
		t.Fatalf("no member token in the banner:\n%s", out.String())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m[1]+"/api/orders",
		strings.NewReader(`{"merchantId":"shop7","date":"2026-11-26","price":36.5}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+mem[1])
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("the banner's order for shop7: %s, want 201 (MERCHANTS=registered)", resp.Status)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stop: %v\n%s", err, out.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not return within a minute of the interrupt")
	}
	if _, err := http.Get(m[1] + "/"); err == nil {
		t.Error("nginx still answers after the stop")
	}
}
