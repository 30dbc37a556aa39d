package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.Error(w, `{"status":"unready"}`, http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	if err := check(srv.URL+"/readyz", time.Second); err != nil {
		t.Errorf("ready server: %v", err)
	}
	if err := check(srv.URL+"/other", time.Second); err == nil {
		t.Error("503 counted as healthy")
	}
	addr := srv.Listener.Addr().String()
	srv.Close()
	if err := check("http://"+addr+"/readyz", time.Second); err == nil {
		t.Error("closed port counted as healthy")
	}
}
