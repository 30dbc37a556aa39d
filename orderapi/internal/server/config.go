package server

import (
	"io"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"orderpush/orderapi/internal/attention"
	"orderpush/orderapi/internal/store"
	"orderpush/pkg/config"
	"orderpush/pkg/logging"
	"orderpush/pkg/stream/publish"
	"orderpush/pkg/token"
)

// Config is every setting of the orderapi binary. Load fills it from the
// environment (PROTOCOL.md "Running it"); each field names its variable and
// default.
type Config struct {
	Addr        string             // ORDERAPI_ADDR, default ":8090"
	DatabaseURL string             // DATABASE_URL, default "sqlite://data/orders.db"
	Redis       config.RedisConfig // REDIS_URL, default redis://127.0.0.1:6379/0
	JWT         token.Config       // JWT_SECRET (>= 32 bytes) or JWT_PUBLIC_KEY_FILE; JWT_ISSUER, JWT_AUDIENCE
	HistorySize int                // HISTORY_SIZE, default 1000 events per merchant in Redis
	HistoryTTL  time.Duration      // HISTORY_TTL, default 24h
	// EventRetention is EVENT_RETENTION, default 168h: how long the event
	// log keeps published events.
	EventRetention time.Duration
	// CORSOrigins is CORS_ALLOWED_ORIGINS, comma-separated origins browsers
	// may call from, default "*" (any).
	CORSOrigins []string
	// RelayInterval is OUTBOX_RELAY_INTERVAL, default 1s: how often the
	// outbox relay looks for events Redis did not get.
	RelayInterval time.Duration
	// RelayGrace is how long after its commit an unpublished event is left
	// to the fast path before the relay takes it (default 3s; tests only).
	RelayGrace time.Duration
	// DBConnectTimeout is DATABASE_CONNECT_TIMEOUT, default 30s: how long
	// start-up waits for the database.
	DBConnectTimeout time.Duration
	// DrainDelay is how long, after SIGTERM, the server keeps its listener
	// open answering readiness 503 and API requests 503 unavailable, so
	// balancers and keep-alive clients learn it is leaving (default 500ms).
	DrainDelay time.Duration
	// ShutdownTimeout bounds the wait for requests in flight after the
	// drain delay (default 8s; with the delay inside the contract's 10 s).
	ShutdownTimeout time.Duration
	// OrderRate is ORDER_RATE, default 20/s (burst 40): POST /orders per
	// member across all replicas, kept in Redis; "0" turns it off.
	OrderRate config.Rate
	// Merchants is MERCHANTS, "open" (default: any valid merchant id takes
	// orders) or "registered" (only merchants registered with
	// PUT /merchants/{id}).
	Merchants string
	// PprofAddr is PPROF_ADDR, default unset (off): the net/http/pprof
	// listen address. Keep it off public interfaces.
	PprofAddr string
	// Attention is the attention webhook: ATTENTION_WEBHOOK_URL (unset:
	// off), ATTENTION_WEBHOOK_SECRET, UNDELIVERED_AFTER (60s),
	// UNSEEN_AFTER (3m).
	Attention attention.Config
}

// MERCHANTS values.
const (
	MerchantsOpen       = "open"
	MerchantsRegistered = "registered"
)

// Load reads the configuration and builds the logger (LOG_LEVEL,
// LOG_FORMAT) writing to logOut. The error lists every bad setting by name.
func Load(getenv func(string) string, logOut io.Writer) (Config, *slog.Logger, error) {
	l := config.NewLoader(getenv)
	c := Config{
		Addr:             l.Addr("ORDERAPI_ADDR", ":8090"),
		DatabaseURL:      l.String("DATABASE_URL", "sqlite://data/orders.db"),
		Redis:            l.Redis(),
		JWT:              l.JWT(),
		HistorySize:      l.Int("HISTORY_SIZE", publish.DefaultHistorySize, 1, 1_000_000),
		HistoryTTL:       l.Duration("HISTORY_TTL", publish.DefaultHistoryTTL, time.Second, 365*24*time.Hour),
		EventRetention:   l.Duration("EVENT_RETENTION", 168*time.Hour, time.Minute, 10*365*24*time.Hour),
		CORSOrigins:      origins(l),
		RelayInterval:    l.Duration("OUTBOX_RELAY_INTERVAL", time.Second, 10*time.Millisecond, time.Hour),
		DBConnectTimeout: l.Duration("DATABASE_CONNECT_TIMEOUT", 30*time.Second, 0, time.Hour),
		DrainDelay:       500 * time.Millisecond,
		ShutdownTimeout:  8 * time.Second,
		OrderRate:        l.Rate("ORDER_RATE", config.Rate{N: 20, Per: time.Second}),
		Merchants:        l.Enum("MERCHANTS", MerchantsOpen, MerchantsOpen, MerchantsRegistered),
		Attention:        loadAttention(l),
	}
	if l.String("PPROF_ADDR", "") != "" {
		c.PprofAddr = l.Addr("PPROF_ADDR", "")
	}
	if _, _, err := store.ParseURL(c.DatabaseURL); err != nil {
		l.Fail("DATABASE_URL", "%v", err)
	}
	logger := logging.Load(l, logOut)
	return c, logger, l.Err()
}

// origins reads CORS_ALLOWED_ORIGINS: "*" or scheme://host[:port] entries.
func origins(l *config.Loader) []string {
	var out []string
	for _, o := range strings.Split(l.String("CORS_ALLOWED_ORIGINS", "*"), ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if o != "*" {
			u, err := url.Parse(o)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
				l.Fail("CORS_ALLOWED_ORIGINS", "want * or comma-separated origins like https://shop.example, got %q", o)
				continue
			}
			o = strings.TrimSuffix(o, "/")
		}
		out = append(out, o)
	}
	if len(out) == 0 {
		out = []string{"*"}
	}
	return out
}
