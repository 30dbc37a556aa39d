package attention

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Defaults of the contract and of the sender.
const (
	DefaultUndeliveredAfter = 60 * time.Second
	DefaultUnseenAfter      = 3 * time.Minute
	// AttemptTimeout bounds one attempt: no answer within it is a failure
	// (PROTOCOL.md, "Receipts and attention": no answer within 10 s).
	AttemptTimeout = 10 * time.Second
	// RetryFor is how long after firing an alert is retried.
	RetryFor = 24 * time.Hour
	// MinSecret is the shortest ATTENTION_WEBHOOK_SECRET accepted.
	MinSecret = 32
)

// Config configures a Scheduler. Zero values of the tuning fields mean
// their defaults.
type Config struct {
	// URL is ATTENTION_WEBHOOK_URL; nil means the webhook is off.
	URL *url.URL
	// Secret is ATTENTION_WEBHOOK_SECRET, the HMAC-SHA256 key.
	Secret []byte
	// UndeliveredAfter is UNDELIVERED_AFTER, default 60s.
	UndeliveredAfter time.Duration
	// UnseenAfter is UNSEEN_AFTER, default 3m.
	UnseenAfter time.Duration

	// PollInterval is how often a replica looks for due alerts [1s].
	PollInterval time.Duration
	// Workers bounds the attempts in flight per replica [8].
	Workers int
	// Lease is how long a claimed alert is the claimer's alone [30s]; it
	// must exceed AttemptTimeout plus the database writes around it.
	Lease time.Duration
	// AttemptTimeout bounds one attempt [AttemptTimeout]; tests only.
	AttemptTimeout time.Duration
}

// On reports whether the webhook is configured.
func (c Config) On() bool { return c.URL != nil }

func (c Config) withDefaults() Config {
	if c.UndeliveredAfter <= 0 {
		c.UndeliveredAfter = DefaultUndeliveredAfter
	}
	if c.UnseenAfter <= 0 {
		c.UnseenAfter = DefaultUnseenAfter
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = AttemptTimeout
	}
	if c.Lease <= 0 {
		c.Lease = 3 * c.AttemptTimeout
	}
	return c
}

// maxURL bounds ATTENTION_WEBHOOK_URL's length.
const maxURL = 2048

// ParseURL validates ATTENTION_WEBHOOK_URL: an absolute http or https URL
// with a host, no fragment, at most 2 KiB. User information is allowed
// (basic authentication at the receiver) but never logged.
func ParseURL(raw string) (*url.URL, error) {
	if len(raw) > maxURL {
		return nil, fmt.Errorf("longer than %d bytes", maxURL)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("want an http:// or https:// URL")
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return nil, errors.New("want an absolute URL with a host, like https://alerts.example/orderpush")
	case u.Fragment != "" || u.RawFragment != "" || u.ForceQuery && u.RawQuery == "":
		return nil, errors.New("must not have a fragment or an empty query")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("bad port %q", p)
		}
	}
	return u, nil
}

// CheckSecret validates ATTENTION_WEBHOOK_SECRET.
func CheckSecret(secret []byte) error {
	if len(secret) < MinSecret {
		return fmt.Errorf("want at least %d bytes, got %d", MinSecret, len(secret))
	}
	return nil
}
