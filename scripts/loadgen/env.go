package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"orderpush/pkg/config"
	"orderpush/pkg/stream/publish"
	"orderpush/pkg/token"
)

// Env is the system under test and how to reach it. Build it with NewEnv;
// it is safe for concurrent use once built.
type Env struct {
	Gateways    []*url.URL     // ws:// URLs of /ws, used round-robin
	OrderAPI    string         // base http URL of the order API, "" when absent
	Secret      []byte         // JWT_SECRET of the stack
	GatewayPIDs []int          // local pids aligned with Gateways, 0 when not local
	ServicePIDs map[string]int // other local processes of the stack ("orderapi", "redis"), for CPU figures
	SourceIPs   int            // loopback source addresses to spread sockets over
	SourceBase  int            // first source address is 127.0.0.(1+SourceBase)
	RunID       string         // makes merchant and user ids unique to this run
	Progress    io.Writer      // progress lines, nil for none
	Profile     *Profiler      // gateway profiles during measured phases, nil for none

	Redis  redis.UniversalClient
	Stream *publish.Publisher
	HTTP   *http.Client

	epoch time.Time
}

// EnvConfig are the inputs of NewEnv.
type EnvConfig struct {
	Gateways    []string // ws://host:port/ws (a bare host:port gets ws:// and /ws)
	OrderAPI    string
	RedisURL    string
	Secret      []byte
	GatewayPIDs []int
	SourceIPs   int
	Progress    io.Writer
}

// NewEnv validates cfg and connects to Redis (when a URL is given).
func NewEnv(cfg EnvConfig) (*Env, error) {
	if len(cfg.Secret) < token.MinSecretLen {
		return nil, fmt.Errorf("secret: need at least %d bytes (-secret or JWT_SECRET)", token.MinSecretLen)
	}
	e := &Env{
		OrderAPI:  strings.TrimSuffix(cfg.OrderAPI, "/"),
		Secret:    cfg.Secret,
		SourceIPs: max(1, cfg.SourceIPs),
		Progress:  cfg.Progress,
		RunID:     newRunID(),
		epoch:     time.Now(),
	}
	for _, g := range cfg.Gateways {
		u, err := gatewayURL(g)
		if err != nil {
			return nil, err
		}
		e.Gateways = append(e.Gateways, u)
	}
	if len(cfg.GatewayPIDs) > 0 && len(cfg.GatewayPIDs) != len(e.Gateways) {
		return nil, fmt.Errorf("pids: got %d, want one per gateway (%d)", len(cfg.GatewayPIDs), len(e.Gateways))
	}
	e.GatewayPIDs = cfg.GatewayPIDs
	if e.SourceIPs+e.SourceBase > 250 {
		return nil, errors.New("source IPs: at most 250 (127.0.0.1 .. 127.0.0.250)")
	}
	if cfg.RedisURL != "" {
		rc, err := config.ParseRedisURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("redis url: %w", err)
		}
		e.Redis = rc.NewRedis("loadgen")
		e.Stream = publish.New(e.Redis, publish.Options{})
	}
	e.HTTP = &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     30 * time.Second,
		},
	}
	return e, nil
}

// Close releases the Redis client and idle HTTP connections.
func (e *Env) Close() {
	if e.Redis != nil {
		_ = e.Redis.Close()
	}
	e.HTTP.CloseIdleConnections()
}

// Now is the time since the Env was built on the monotonic clock; every send
// and receive stamp of a run uses it, so their differences are exact.
func (e *Env) Now() time.Duration { return time.Since(e.epoch) }

// NextRun gives the Env a fresh RunID, so the next scenario's merchants have
// no history. Every scenario calls it first; scenarios run one at a time.
func (e *Env) NextRun() { e.RunID = newRunID() }

// MerchantID is the id of the run's i-th merchant.
func (e *Env) MerchantID(scope string, i int) string {
	return fmt.Sprintf("lg%s%s%d", e.RunID, scope, i)
}

// UserID is the id of the run's i-th member (order placer).
func (e *Env) UserID(i int) string { return fmt.Sprintf("lg%su%d", e.RunID, i) }

// Token mints a token for role and sub valid for ttl.
func (e *Env) Token(role, sub string, ttl time.Duration) (string, error) {
	return token.Mint(e.Secret, role, sub, ttl)
}

// NeedRedis and NeedOrderAPI give scenarios a clear error.
func (e *Env) NeedRedis() error {
	if e.Redis == nil {
		return errors.New("this scenario needs Redis: give -redis (the stack's REDIS_URL)")
	}
	return nil
}

// NeedOrderAPI reports a missing order API URL.
func (e *Env) NeedOrderAPI() error {
	if e.OrderAPI == "" {
		return errors.New("this scenario needs the order API: give -orderapi")
	}
	return nil
}

// NeedGateways reports a missing gateway list.
func (e *Env) NeedGateways() error {
	if len(e.Gateways) == 0 {
		return errors.New("this scenario needs gateways: give -gateways ws://host:port/ws,...")
	}
	return nil
}

// Ping checks Redis before a long phase.
func (e *Env) Ping(ctx context.Context) error {
	if e.Redis == nil {
		return nil
	}
	if err := e.Redis.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// MetricsURL is the /metrics address of gateway i.
func (e *Env) MetricsURL(i int) string {
	u := *e.Gateways[i]
	u.Scheme = "http"
	if e.Gateways[i].Scheme == "wss" {
		u.Scheme = "https"
	}
	u.Path, u.RawQuery = "/metrics", ""
	return u.String()
}

func gatewayURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "ws://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("gateway %q: %w", s, err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return nil, fmt.Errorf("gateway %q: want ws:// or wss://", s)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/ws"
	}
	return u, nil
}

func newRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
