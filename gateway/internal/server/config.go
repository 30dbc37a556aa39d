package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"time"

	"orderpush/gateway/internal/admission"
	"orderpush/gateway/internal/hub"
	"orderpush/gateway/internal/session"
	"orderpush/gateway/internal/sidroute"
	"orderpush/gateway/internal/transport/ws"
	"orderpush/gateway/web"
	"orderpush/pkg/config"
	"orderpush/pkg/logging"
	"orderpush/pkg/token"
)

// DefaultGCPercent is GOGC's default for the gateway: Go's own, the heap
// may grow to twice the live heap before a collection. An idle gateway's
// heap is its sockets' long-lived state, so a lower GOGC trades CPU for
// memory per socket: 50 measured 15.6 KiB of RSS per idle socket against
// 17.8, but 17% more CPU per connect and 19% more per fan-out delivery
// (scripts/BENCHMARKS.md, "Issue 13"). That cost falls on the load the
// gateway exists for, so the default stays; a replica that is full of idle
// sockets before its CPU is busy may set GOGC=50.
const DefaultGCPercent = 100

// Config is every setting of the gateway. Load fills it from the
// environment; each field names its variable and default.
type Config struct {
	Addr           string             // GATEWAY_ADDR, default ":8080"
	NodeID         string             // NODE_ID, default host name + random suffix
	Redis          config.RedisConfig // REDIS_URL, default redis://127.0.0.1:6379/0
	JWT            token.Config       // JWT_SECRET / JWT_PUBLIC_KEY_FILE, JWT_ISSUER, JWT_AUDIENCE
	AllowedOrigins []string           // ALLOWED_ORIGINS, comma-separated; empty: any Origin
	SendQueueSize  int                // SEND_QUEUE_SIZE, default 256 frames
	OrderAPIURL    string             // ORDERAPI_URL, default unset
	OrderAPIToken  string             // ORDERAPI_TOKEN, default: minted from JWT_SECRET
	PprofAddr      string             // PPROF_ADDR, default unset (off): net/http/pprof listen address
	GCPercent      int                // GOGC, default 100, 10-1000: the heap's growth before a collection, in percent of the live heap (see DefaultGCPercent)
	GapWait        time.Duration      // GAP_WAIT, default 100ms: how long an early event waits for the missing one
	ReplayMax      int                // REPLAY_MAX, default 10000: longest replay before resync
	DrainSpread    time.Duration      // DRAIN_SPREAD, default 2s: closing sockets on SIGTERM is spread over this
	PingInterval   time.Duration      // PING_INTERVAL, default 25s: keepalive pings
	AdvertiseURL   string             // ADVERTISE_URL, default from GATEWAY_ADDR: where other replicas forward socket.io polls
	PingTimeout    time.Duration      // PING_TIMEOUT, default 10s: no pong within this closes the connection; 0: off
	ClientMsgRate  config.Rate        // CLIENT_MSG_RATE, default 10/s (burst twice): client messages per connection; 0: off
	// DashboardAPIURL is DASHBOARD_API_URL: the order API's base URL as the
	// dashboard calls it; default unset: /api on the page's own origin.
	DashboardAPIURL string

	// Connect admission (PROTOCOL.md, "Limits and hostile clients"); 0 is off.
	TrustedProxies      []netip.Prefix // TRUSTED_PROXIES, default 127.0.0.1/32,::1/128; "none": no proxy is believed
	ConnectRate         config.Rate    // CONNECT_RATE, default 20/s per client IP (burst 40)
	MaxConns            int            // MAX_CONNS, default 90% of the open-file limit
	MaxConnsPerMerchant int            // MAX_CONNS_PER_MERCHANT, default 50, across replicas

	// Not from the environment (tests): zero means the package default.
	SSEHeartbeat time.Duration // comment lines on /sse streams, default 15 s
	BeatInterval time.Duration // presence heartbeat, default 3 s
	ReadTimeout  time.Duration // non-upgraded requests (see Serve), default 30 s
	PresenceTTL  time.Duration // presence liveness, default 10 s
}

// Load reads the configuration and builds the logger (LOG_LEVEL,
// LOG_FORMAT) writing to logOut. The error names every bad setting.
func Load(getenv func(string) string, logOut io.Writer) (Config, *slog.Logger, error) {
	l := config.NewLoader(getenv)
	c := Config{
		Addr:          l.Addr("GATEWAY_ADDR", ":8080"),
		NodeID:        l.String("NODE_ID", ""),
		Redis:         l.Redis(),
		JWT:           l.JWT(),
		SendQueueSize: l.Int("SEND_QUEUE_SIZE", session.DefaultQueueSize, 1, 1<<16),
		OrderAPIURL:   l.String("ORDERAPI_URL", ""),
		OrderAPIToken: l.String("ORDERAPI_TOKEN", ""),
		PprofAddr:     l.String("PPROF_ADDR", ""),
		GCPercent:     l.Int("GOGC", DefaultGCPercent, 10, 1000),
		GapWait:       l.Duration("GAP_WAIT", hub.DefaultGapWait, time.Millisecond, 10*time.Second),
		ReplayMax:     l.Int("REPLAY_MAX", hub.DefaultReplayMax, 1, 10_000_000),
		DrainSpread:   l.Duration("DRAIN_SPREAD", 2*time.Second, 0, 8*time.Second),
		PingInterval:  l.Duration("PING_INTERVAL", ws.DefaultPingInterval, time.Second, time.Hour),
		PingTimeout:   l.Duration("PING_TIMEOUT", ws.DefaultPingTimeout, 0, time.Hour),
		ClientMsgRate: l.Rate("CLIENT_MSG_RATE", session.DefaultMsgRate),

		ConnectRate:         l.Rate("CONNECT_RATE", admission.DefaultConnectRate),
		MaxConns:            l.Int("MAX_CONNS", admission.DefaultMaxConns(), 0, 100_000_000),
		MaxConnsPerMerchant: l.Int("MAX_CONNS_PER_MERCHANT", admission.DefaultMaxConnsPerMerchant, 0, 1_000_000),
	}
	proxies, err := admission.ParseTrustedProxies(l.String("TRUSTED_PROXIES", admission.DefaultTrustedProxies))
	if err != nil {
		l.Fail("TRUSTED_PROXIES", "%v", err)
	}
	c.TrustedProxies = proxies
	if v := l.String("DASHBOARD_API_URL", ""); v != "" {
		if u, err := web.ParseAPIURL(v); err != nil {
			l.Fail("DASHBOARD_API_URL", "%v", err)
		} else {
			c.DashboardAPIURL = u.String()
		}
	}
	if c.NodeID == "" {
		c.NodeID = defaultNodeID()
	} else if !validNodeID(c.NodeID) {
		l.Fail("NODE_ID", "want 1-100 characters of A-Z a-z 0-9 . _ -, got %q", c.NodeID)
	}
	if c.PprofAddr != "" {
		c.PprofAddr = l.Addr("PPROF_ADDR", "")
	}
	c.AdvertiseURL = l.String("ADVERTISE_URL", "")
	if c.AdvertiseURL == "" {
		c.AdvertiseURL = sidroute.DefaultAdvertise(c.Addr)
	} else if u, err := sidroute.ParseAdvertise(c.AdvertiseURL); err != nil {
		l.Fail("ADVERTISE_URL", "%v", err)
	} else {
		c.AdvertiseURL = u.String()
	}
	var origins []string
	origins, err = parseOrigins(l.String("ALLOWED_ORIGINS", ""))
	if err != nil {
		l.Fail("ALLOWED_ORIGINS", "%v", err)
	}
	c.AllowedOrigins = origins
	if c.OrderAPIURL != "" {
		if u, err := url.Parse(c.OrderAPIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			l.Fail("ORDERAPI_URL", "want an http(s) URL like http://127.0.0.1:8090, got %q", c.OrderAPIURL)
		}
		if c.OrderAPIToken == "" && len(c.JWT.Secret) == 0 {
			l.Fail("ORDERAPI_TOKEN", "required with ORDERAPI_URL when JWT_SECRET is not set (no secret to mint a service token)")
		}
	}
	log := logging.Load(l, logOut)
	if err := l.Err(); err != nil {
		return Config{}, nil, err
	}
	return c, log.With(slog.String(logging.KeyNode, c.NodeID)), nil
}

// OneLine joins a multi-error into one line, for the start-up failure.
func OneLine(err error) string {
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		parts := make([]string, 0, len(j.Unwrap()))
		for _, e := range j.Unwrap() {
			parts = append(parts, e.Error())
		}
		return strings.Join(parts, "; ")
	}
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

func (c Config) readTimeout() time.Duration {
	if c.ReadTimeout > 0 {
		return c.ReadTimeout
	}
	return defaultReadTimeout
}

// defaultNodeID is the host name (reduced to the allowed characters) and a
// random suffix, so two replicas on one host differ.
func defaultNodeID() string {
	h := strings.Map(func(r rune) rune {
		if nodeIDChar(byte(r)) && r < 128 {
			return r
		}
		return '-'
	}, config.Hostname())
	if len(h) > 80 {
		h = h[:80]
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return h + "-" + hex.EncodeToString(b[:])
}

func validNodeID(s string) bool {
	if len(s) == 0 || len(s) > 100 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !nodeIDChar(s[i]) {
			return false
		}
	}
	return true
}

func nodeIDChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

// parseOrigins splits ALLOWED_ORIGINS and checks every pattern.
func parseOrigins(s string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == "" {
			continue
		}
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("bad pattern %q: %v", p, err)
		}
		if strings.Contains(p, "/") && !strings.Contains(p, "://") {
			return nil, fmt.Errorf("bad pattern %q: want host or scheme://host", p)
		}
		out = append(out, strings.TrimSuffix(p, "/"))
	}
	return out, nil
}

// originAllowed reports whether a request's Origin passes ALLOWED_ORIGINS
// (PROTOCOL.md "Merchant socket"): no patterns or no Origin header (not a
// browser) pass; else the origin's host, or scheme://host for a pattern with
// a scheme, must match a pattern, case-insensitively, "*" within the host.
func originAllowed(patterns []string, origin string) bool {
	if len(patterns) == 0 || origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	host := strings.ToLower(u.Host)
	full := strings.ToLower(u.Scheme) + "://" + host
	for _, p := range patterns {
		target := host
		if strings.Contains(p, "://") {
			target = full
		}
		if ok, _ := path.Match(p, target); ok {
			return true
		}
	}
	return false
}
