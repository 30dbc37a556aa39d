package server_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"orderpush/orderapi/internal/server"
)

// The webhook's settings: off by default; with a URL, a secret of at least
// 32 bytes is required; only http(s) URLs; every error names its setting
// and never echoes the URL (it may carry credentials).
func TestAttentionSettings(t *testing.T) {
	t.Parallel()
	base := map[string]string{"JWT_SECRET": "0123456789abcdef0123456789abcdef"}
	load := func(extra map[string]string) (server.Config, error) {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		c, _, err := server.Load(func(k string) string { return env[k] }, io.Discard)
		return c, err
	}
	c, err := load(nil)
	if err != nil || c.Attention.On() {
		t.Fatalf("default: on=%v err=%v, want off", c.Attention.On(), err)
	}
	good := strings.Repeat("s3cr3t-", 5)
	c, err = load(map[string]string{"ATTENTION_WEBHOOK_URL": "https://alerts.example/hook",
		"ATTENTION_WEBHOOK_SECRET": good, "UNDELIVERED_AFTER": "90s", "UNSEEN_AFTER": "5m"})
	if err != nil || !c.Attention.On() || string(c.Attention.Secret) != good ||
		c.Attention.UndeliveredAfter != 90*time.Second || c.Attention.UnseenAfter != 5*time.Minute {
		t.Fatalf("configured: %+v %v", c.Attention, err)
	}
	c, err = load(map[string]string{"ATTENTION_WEBHOOK_URL": "https://alerts.example/hook", "ATTENTION_WEBHOOK_SECRET": good})
	if err != nil || c.Attention.UndeliveredAfter != time.Minute || c.Attention.UnseenAfter != 3*time.Minute {
		t.Fatalf("defaults: %+v %v", c.Attention, err)
	}
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"no secret":     {map[string]string{"ATTENTION_WEBHOOK_URL": "https://a.example/h"}, "ATTENTION_WEBHOOK_SECRET"},
		"short secret":  {map[string]string{"ATTENTION_WEBHOOK_URL": "https://a.example/h", "ATTENTION_WEBHOOK_SECRET": "short"}, "ATTENTION_WEBHOOK_SECRET"},
		"secret no url": {map[string]string{"ATTENTION_WEBHOOK_SECRET": good}, "ATTENTION_WEBHOOK_SECRET"},
		"ftp":           {map[string]string{"ATTENTION_WEBHOOK_URL": "ftp://user:hunter2@a.example/h", "ATTENTION_WEBHOOK_SECRET": good}, "ATTENTION_WEBHOOK_URL"},
		"relative":      {map[string]string{"ATTENTION_WEBHOOK_URL": "/hook", "ATTENTION_WEBHOOK_SECRET": good}, "ATTENTION_WEBHOOK_URL"},
		"undelivered":   {map[string]string{"UNDELIVERED_AFTER": "soon"}, "UNDELIVERED_AFTER"},
		"unseen zero":   {map[string]string{"UNSEEN_AFTER": "0s"}, "UNSEEN_AFTER"},
	} {
		_, err := load(tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error echoes the URL's password: %v", name, err)
		}
	}
}
