package server

import (
	"time"

	"orderpush/orderapi/internal/attention"
	"orderpush/pkg/config"
)

// loadAttention reads the attention webhook's settings (PROTOCOL.md
// "Receipts and attention"): off unless ATTENTION_WEBHOOK_URL is set, and
// then ATTENTION_WEBHOOK_SECRET is required.
func loadAttention(l *config.Loader) attention.Config {
	c := attention.Config{
		UndeliveredAfter: l.Duration("UNDELIVERED_AFTER", attention.DefaultUndeliveredAfter, time.Second, 7*24*time.Hour),
		UnseenAfter:      l.Duration("UNSEEN_AFTER", attention.DefaultUnseenAfter, time.Second, 7*24*time.Hour),
	}
	raw := l.String("ATTENTION_WEBHOOK_URL", "")
	secret := l.String("ATTENTION_WEBHOOK_SECRET", "")
	if raw == "" {
		if secret != "" {
			l.Fail("ATTENTION_WEBHOOK_SECRET", "set without ATTENTION_WEBHOOK_URL")
		}
		return c
	}
	u, err := attention.ParseURL(raw)
	if err != nil {
		// The value is not echoed: it may carry credentials.
		l.Fail("ATTENTION_WEBHOOK_URL", "%v", err)
	}
	if secret == "" {
		l.Fail("ATTENTION_WEBHOOK_SECRET", "required with ATTENTION_WEBHOOK_URL (at least %d bytes)", attention.MinSecret)
	} else if err := attention.CheckSecret([]byte(secret)); err != nil {
		l.Fail("ATTENTION_WEBHOOK_SECRET", "%v", err)
	}
	c.URL, c.Secret = u, []byte(secret)
	return c
}
