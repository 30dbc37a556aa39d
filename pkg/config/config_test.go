package config_test

import (
	"strings"
	"testing"
	"time"

	"orderpush/pkg/config"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoader(t *testing.T) {
	t.Parallel()
	l := config.NewLoader(env(map[string]string{
		"N": "12", "BADN": "x", "BIGN": "99", "D": "24h", "BADD": "1 day", "ADDR": "nohost", "E": "TEXT",
	}))
	if l.Int("N", 1, 0, 50) != 12 || l.Int("UNSET", 7, 0, 50) != 7 {
		t.Error("Int")
	}
	l.Int("BADN", 1, 0, 50)
	l.Int("BIGN", 1, 0, 50)
	if l.Duration("D", 0, 0, 48*time.Hour) != 24*time.Hour {
		t.Error("Duration")
	}
	l.Duration("BADD", time.Hour, 0, 48*time.Hour)
	l.Addr("ADDR", ":80")
	if l.Enum("E", "json", "json", "text") != "text" {
		t.Error("Enum")
	}
	err := l.Err()
	for _, name := range []string{"BADN", "BIGN", "BADD", "ADDR"} {
		if err == nil || !strings.Contains(err.Error(), name+":") {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
}

func TestJWTAndRedis(t *testing.T) {
	t.Parallel()
	l := config.NewLoader(env(map[string]string{"JWT_SECRET": "short"}))
	l.JWT()
	if err := l.Err(); err == nil || !strings.Contains(err.Error(), "JWT_SECRET") {
		t.Fatalf("short secret: %v", err)
	}
	l = config.NewLoader(env(map[string]string{}))
	l.JWT()
	if err := l.Err(); err == nil || !strings.Contains(err.Error(), "JWT_SECRET: required") {
		t.Fatalf("missing secret: %v", err)
	}
	l = config.NewLoader(env(map[string]string{"REDIS_URL": "redis-cluster://127.0.0.1:7000?addr=127.0.0.1:7001"}))
	c := l.Redis()
	if l.Err() != nil || c.Cluster == nil || len(c.Cluster.Addrs) != 2 {
		t.Fatalf("cluster url: %+v %v", c, l.Err())
	}
	l = config.NewLoader(env(map[string]string{}))
	if c := l.Redis(); c.Single == nil || c.Single.Addr != "127.0.0.1:6379" {
		t.Fatalf("default redis: %+v", c)
	}
	l = config.NewLoader(env(map[string]string{"REDIS_URL": "http://x"}))
	l.Redis()
	if err := l.Err(); err == nil || !strings.HasPrefix(err.Error(), "REDIS_URL:") {
		t.Fatalf("bad url: %v", err)
	}
}
