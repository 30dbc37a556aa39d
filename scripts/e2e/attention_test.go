package e2e_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
	"orderpush/scripts/launch"
)

// TestAttentionSurvivesSIGKILL: an order API process is killed (SIGKILL)
// while one alert of an order is in the middle of an attempt (the receiver
// holds the request) and the other is still pending; the order API started
// again on the same database sends both, signed, with their ids, once the
// dead replica's lease has ended.
func TestAttentionSurvivesSIGKILL(t *testing.T) {
	const webhookSecret = "e2e-attention-secret-0123456789abcdef"
	type hit struct {
		id     string
		sigOK  bool
		status int
	}
	var (
		mu      sync.Mutex
		hits    []hit
		holding = true // answer nothing until the first process is dead
	)
	stop := make(chan struct{})
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		mac := hmac.New(sha256.New, []byte(webhookSecret))
		mac.Write(body)
		sigOK := hmac.Equal([]byte(r.Header.Get("X-Orderpush-Signature")), []byte("sha256="+hex.EncodeToString(mac.Sum(nil))))
		var ev struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(body, &ev) != nil || ev.ID != r.Header.Get("X-Orderpush-Event-Id") {
			sigOK = false
		}
		mu.Lock()
		hold := holding
		h := hit{id: ev.ID, sigOK: sigOK, status: http.StatusNoContent}
		if hold {
			h.status = 0 // never answered
		}
		hits = append(hits, h)
		mu.Unlock()
		if hold {
			select {
			case <-r.Context().Done(): // the sender died
			case <-stop:
			}
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rcv.Close)
	t.Cleanup(func() { close(stop) })

	dir := t.TempDir()
	secret := launch.NewSecret()
	env := []string{
		"REDIS_URL=" + redistest.SharedURL(t), "JWT_SECRET=" + secret, "LOG_FORMAT=json",
		"DATABASE_URL=sqlite://" + filepath.Join(dir, "orders.db"),
		"ATTENTION_WEBHOOK_URL=" + rcv.URL + "/hook", "ATTENTION_WEBHOOK_SECRET=" + webhookSecret,
		"UNDELIVERED_AFTER=60s", "UNSEEN_AFTER=2s",
	}
	startAPI := func(name string) (*launch.Proc, string) {
		port, err := launch.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		url := "http://127.0.0.1:" + strconv.Itoa(port)
		p := launch.StartT(t, launch.Spec{Name: name, Path: bins.OrderAPI, LogFile: filepath.Join(dir, name+".log"),
			Env: append(append([]string{}, env...), "ORDERAPI_ADDR=127.0.0.1:"+strconv.Itoa(port))})
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		if err := p.WaitReady(ctx, url); err != nil {
			t.Fatal(err)
		}
		return p, url
	}
	count := func(id string, answered bool) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, h := range hits {
			if h.id == id && (h.status != 0) == answered {
				n++
			}
		}
		return n
	}

	first, url := startAPI("orderapi-1")
	m := redistest.Unique("e2e-attention") // no socket: order.undelivered at once
	code, body := call(t, http.MethodPost, url+"/orders", launch.MintToken([]byte(secret), token.RoleMember, "u1", time.Hour),
		`{"merchantId":"`+m+`","date":"2022-06-22","price":12}`)
	if code != http.StatusCreated {
		t.Fatalf("POST /orders: %d %s", code, body)
	}
	var o struct {
		OrderNo string `json:"orderNo"`
	}
	if err := json.Unmarshal(body, &o); err != nil {
		t.Fatal(err)
	}
	undelivered, unseen := "order.undelivered/"+o.OrderNo, "order.unseen/"+o.OrderNo
	waitUntil(t, 30*time.Second, "the undelivered attempt in flight", func() bool { return count(undelivered, false) == 1 })
	first.Kill()
	if code, _ := first.Wait(); code != -1 {
		t.Fatalf("killed order API exited with %d", code)
	}
	mu.Lock()
	holding = false
	mu.Unlock()
	killedAt := time.Now()

	_, url = startAPI("orderapi-2")
	// The in-flight alert waits for the dead replica's lease (30 s); the
	// pending one comes due on its own.
	waitUntil(t, 90*time.Second, "both alerts answered after the restart", func() bool {
		return count(undelivered, true) == 1 && count(unseen, true) == 1
	})
	t.Logf("both alerts sent %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	mu.Lock()
	for _, h := range hits {
		if !h.sigOK {
			t.Errorf("request for %s: bad signature or id header", h.id)
		}
	}
	mu.Unlock()
	merchantTok := launch.MintToken([]byte(secret), token.RoleMerchant, m, time.Hour)
	waitUntil(t, 10*time.Second, "both alerts completed on the order", func() bool {
		code, body := call(t, http.MethodGet, url+"/orders/"+o.OrderNo, merchantTok, "")
		var got struct {
			Alerts []struct {
				Type        string  `json:"type"`
				Attempts    int     `json:"attempts"`
				CompletedAt *string `json:"completedAt"`
			} `json:"alerts"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &got) != nil || len(got.Alerts) != 2 {
			return false
		}
		for _, a := range got.Alerts {
			if a.CompletedAt == nil || a.Attempts < 1 {
				return false
			}
		}
		return true
	})
}

// waitUntil polls cond every 50 ms until it holds or d passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond) // poll interval, bounded by the deadline
	}
}
