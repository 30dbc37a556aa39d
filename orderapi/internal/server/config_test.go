package server_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"orderpush/orderapi/internal/server"
	"orderpush/pkg/config"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

const secret = "0123456789abcdef0123456789abcdef"

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	c, _, err := server.Load(env(map[string]string{"JWT_SECRET": secret}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":8090" || c.DatabaseURL != "sqlite://data/orders.db" || c.HistorySize != 1000 ||
		c.HistoryTTL != 24*time.Hour || c.EventRetention != 168*time.Hour || c.RelayInterval != time.Second ||
		len(c.CORSOrigins) != 1 || c.CORSOrigins[0] != "*" || c.Redis.Single == nil || c.Redis.Single.Addr != "127.0.0.1:6379" ||
		c.OrderRate != (config.Rate{N: 20, Per: time.Second}) || c.Merchants != server.MerchantsOpen || c.PprofAddr != "" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestLoadSettings(t *testing.T) {
	t.Parallel()
	c, _, err := server.Load(env(map[string]string{
		"JWT_SECRET": secret, "ORDERAPI_ADDR": "127.0.0.1:9000", "DATABASE_URL": "postgres://u@db/orders",
		"REDIS_URL": "redis-cluster://r1:7000?addr=r2:7000", "HISTORY_SIZE": "50", "HISTORY_TTL": "1h",
		"EVENT_RETENTION": "720h", "CORS_ALLOWED_ORIGINS": "https://a.example, http://b.example:8080/",
		"OUTBOX_RELAY_INTERVAL": "250ms", "LOG_LEVEL": "debug", "LOG_FORMAT": "text",
		"ORDER_RATE": "90/m", "MERCHANTS": "registered", "PPROF_ADDR": "127.0.0.1:6061",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9000" || c.DatabaseURL != "postgres://u@db/orders" || c.Redis.Cluster == nil ||
		c.HistorySize != 50 || c.HistoryTTL != time.Hour || c.EventRetention != 720*time.Hour ||
		strings.Join(c.CORSOrigins, " ") != "https://a.example http://b.example:8080" || c.RelayInterval != 250*time.Millisecond ||
		c.OrderRate != (config.Rate{N: 90, Per: time.Minute}) || c.Merchants != server.MerchantsRegistered || c.PprofAddr != "127.0.0.1:6061" {
		t.Fatalf("settings: %+v", c)
	}
}

// Every bad setting is reported, each naming its variable.
func TestLoadRejects(t *testing.T) {
	t.Parallel()
	for name, kv := range map[string]map[string]string{
		"JWT_SECRET":            {},
		"JWT_SECRET ":           {"JWT_SECRET": "short"},
		"DATABASE_URL":          {"JWT_SECRET": secret, "DATABASE_URL": "mysql://x"},
		"REDIS_URL":             {"JWT_SECRET": secret, "REDIS_URL": "http://x"},
		"ORDERAPI_ADDR":         {"JWT_SECRET": secret, "ORDERAPI_ADDR": "8090"},
		"HISTORY_SIZE":          {"JWT_SECRET": secret, "HISTORY_SIZE": "0"},
		"HISTORY_TTL":           {"JWT_SECRET": secret, "HISTORY_TTL": "forever"},
		"EVENT_RETENTION":       {"JWT_SECRET": secret, "EVENT_RETENTION": "-1h"},
		"CORS_ALLOWED_ORIGINS":  {"JWT_SECRET": secret, "CORS_ALLOWED_ORIGINS": "shop.example"},
		"OUTBOX_RELAY_INTERVAL": {"JWT_SECRET": secret, "OUTBOX_RELAY_INTERVAL": "1"},
		"LOG_LEVEL":             {"JWT_SECRET": secret, "LOG_LEVEL": "loud"},
		"ORDER_RATE":            {"JWT_SECRET": secret, "ORDER_RATE": "20"},
		"ORDER_RATE ":           {"JWT_SECRET": secret, "ORDER_RATE": "20/h"},
		"MERCHANTS":             {"JWT_SECRET": secret, "MERCHANTS": "closed"},
		"PPROF_ADDR":            {"JWT_SECRET": secret, "PPROF_ADDR": "6060"},
	} {
		_, _, err := server.Load(env(kv), io.Discard)
		if err == nil || !strings.Contains(err.Error(), strings.TrimSpace(name)) {
			t.Errorf("%s: error %v does not name it", name, err)
		}
	}
}

// ORDER_RATE=0 turns the limit off.
func TestLoadOrderRateOff(t *testing.T) {
	t.Parallel()
	c, _, err := server.Load(env(map[string]string{"JWT_SECRET": secret, "ORDER_RATE": "0"}), io.Discard)
	if err != nil || !c.OrderRate.Off() {
		t.Fatalf("ORDER_RATE=0: %+v, %v", c.OrderRate, err)
	}
}
