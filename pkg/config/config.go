// Package config reads settings from the environment with one Loader that
// collects every problem, so start-up fails once with all of them, each
// naming its variable. Settings are read through a passed-in lookup function,
// so tests never touch the process environment.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"orderpush/pkg/token"
)

// Loader reads typed settings from a lookup function and remembers errors.
type Loader struct {
	getenv func(string) string
	errs   []error
}

// NewLoader returns a Loader over getenv (os.Getenv in main).
func NewLoader(getenv func(string) string) *Loader { return &Loader{getenv: getenv} }

// Err joins every problem seen so far, or nil.
func (l *Loader) Err() error { return errors.Join(l.errs...) }

// Fail records a problem with a setting.
func (l *Loader) Fail(name, format string, args ...any) {
	l.errs = append(l.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

// String returns the setting or def when unset or empty.
func (l *Loader) String(name, def string) string {
	if v := strings.TrimSpace(l.getenv(name)); v != "" {
		return v
	}
	return def
}

// Int returns the setting as an integer in [min, max].
func (l *Loader) Int(name string, def, min, max int) int {
	s := l.String(name, "")
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < min || v > max {
		l.Fail(name, "want an integer from %d to %d, got %q", min, max, s)
		return def
	}
	return v
}

// Duration returns the setting as a Go duration ("24h", "500ms") in [min, max].
func (l *Loader) Duration(name string, def, min, max time.Duration) time.Duration {
	s := l.String(name, "")
	if s == "" {
		return def
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < min || v > max {
		l.Fail(name, "want a duration from %s to %s (like 24h or 500ms), got %q", min, max, s)
		return def
	}
	return v
}

// Addr returns a listen address host:port.
func (l *Loader) Addr(name, def string) string {
	s := l.String(name, def)
	if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
		l.Fail(name, "want a listen address like :8080 or 127.0.0.1:8080, got %q", s)
	}
	return s
}

// Enum returns the setting, which must be one of allowed.
func (l *Loader) Enum(name, def string, allowed ...string) string {
	s := strings.ToLower(l.String(name, def))
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	l.Fail(name, "want one of %s, got %q", strings.Join(allowed, ", "), s)
	return def
}

// JWT returns the token settings shared by both binaries.
func (l *Loader) JWT() token.Config {
	c := token.Config{
		Secret:        []byte(l.getenv("JWT_SECRET")),
		PublicKeyFile: l.String("JWT_PUBLIC_KEY_FILE", ""),
		Issuer:        l.String("JWT_ISSUER", ""),
		Audience:      l.String("JWT_AUDIENCE", ""),
	}
	if _, err := token.NewVerifier(c); err != nil {
		l.errs = append(l.errs, err)
	}
	return c
}

// DefaultRedisURL is REDIS_URL's default.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// Redis returns REDIS_URL parsed into client options; see NewRedis.
func (l *Loader) Redis() RedisConfig {
	s := l.String("REDIS_URL", DefaultRedisURL)
	c, err := ParseRedisURL(s)
	if err != nil {
		l.Fail("REDIS_URL", "%v", err)
	}
	return c
}

// RedisConfig is a parsed REDIS_URL: single node or cluster.
type RedisConfig struct {
	Single  *redis.Options
	Cluster *redis.ClusterOptions
}

// ParseRedisURL accepts redis://[user:pass@]host:port[/db] and rediss:// for
// one node, and redis-cluster://[user:pass@]host:port[?addr=host:port...] for
// Redis Cluster (the seed nodes; the rest is discovered).
func ParseRedisURL(s string) (RedisConfig, error) {
	if rest, ok := strings.CutPrefix(s, "redis-cluster://"); ok {
		o, err := redis.ParseClusterURL("redis://" + rest)
		if err != nil {
			return RedisConfig{}, fmt.Errorf("bad cluster url: %w", err)
		}
		return RedisConfig{Cluster: o}, nil
	}
	o, err := redis.ParseURL(s)
	if err != nil {
		return RedisConfig{}, fmt.Errorf("want redis://host:port/db or redis-cluster://host:port: %w", err)
	}
	return RedisConfig{Single: o}, nil
}

// NewRedis builds the client. name labels the connections (CLIENT SETNAME).
func (c RedisConfig) NewRedis(name string) redis.UniversalClient {
	if c.Cluster != nil {
		o := *c.Cluster
		o.ClientName = name
		return redis.NewClusterClient(&o)
	}
	o := *c.Single
	o.ClientName = name
	return redis.NewClient(&o)
}

// Hostname returns the host name, or "node" when it cannot be read.
func Hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "node"
	}
	return h
}
