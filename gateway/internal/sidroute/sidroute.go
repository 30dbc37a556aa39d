// Package sidroute gets a socket.io (Engine.IO) request to the replica
// that holds its session. The balancer sends every request of a polling
// client to any replica (round robin, no sticky sessions), but a session
// lives on the replica that made it. Its sid names that replica
// ("<random>.<node id>"); a replica that does not hold the sid forwards the
// request, long poll, POST or websocket upgrade alike, to the owner's
// ADVERTISE_URL, which each replica keeps in Redis next to its presence
// liveness key.
//
// Only addresses that live replicas published are ever dialled: a forged
// sid naming an unknown or dead node, or an address, gets Engine.IO's
// "Session ID unknown"; the gateway is no open proxy. A forwarded request
// is never forwarded again.
//
// A Router is safe for concurrent use.
package sidroute

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"orderpush/pkg/logging"
	"orderpush/pkg/rediskey"
)

// ForwardedHeader marks a request one replica forwarded to another.
const ForwardedHeader = "X-Orderpush-Forwarded-By"

// randomLen is the length of the random part of a sid (engineio.RandomID).
const randomLen = 26

// cacheFor is how long a looked-up address is used without asking Redis.
const cacheFor = 2 * time.Second

// Config of a Router.
type Config struct {
	Node string // this replica's NODE_ID
	Self string // this replica's ADVERTISE_URL
	// TTL is how long the published address outlives the last beat;
	// Beat is the publishing period.
	TTL, Beat time.Duration
	// PollTimeout bounds a forwarded request's wait for response headers:
	// longer than a long poll (pingInterval) with margin.
	PollTimeout time.Duration
}

// Router publishes this replica's address and forwards foreign requests.
type Router struct {
	cfg Config
	rdb redis.UniversalClient
	log *slog.Logger
	tr  *http.Transport

	mu    sync.Mutex
	cache map[string]cached // guarded by mu: node -> address
	proxy map[string]*httputil.ReverseProxy
}

type cached struct {
	u   *url.URL
	exp time.Time
}

// New returns a router; Run publishes the address.
func New(cfg Config, rdb redis.UniversalClient, log *slog.Logger) *Router {
	return &Router{
		cfg: cfg, rdb: rdb, log: log,
		tr: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: cfg.PollTimeout,
		},
		cache: make(map[string]cached),
		proxy: make(map[string]*httputil.ReverseProxy),
	}
}

// SID makes a session id naming this replica.
func SID(random, node string) string { return random + "." + node }

// NodeOf is the replica a sid names, or false for a sid of another shape.
func NodeOf(sid string) (string, bool) {
	if len(sid) <= randomLen+1 || sid[randomLen] != '.' {
		return "", false
	}
	node := sid[randomLen+1:]
	if len(node) > 100 {
		return "", false
	}
	for i := 0; i < len(node); i++ {
		c := node[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return "", false
		}
	}
	return node, true
}

// Run publishes the address every Beat until ctx ends, then removes it.
func (r *Router) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Beat)
	defer t.Stop()
	for {
		r.publish(ctx)
		select {
		case <-t.C:
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = r.rdb.Del(dctx, rediskey.NodeAddr(r.cfg.Node)).Err()
			cancel()
			r.tr.CloseIdleConnections()
			return
		}
	}
}

func (r *Router) publish(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Beat)
	defer cancel()
	if err := r.rdb.Set(ctx, rediskey.NodeAddr(r.cfg.Node), r.cfg.Self, r.cfg.TTL).Err(); err != nil && ctx.Err() == nil {
		r.log.LogAttrs(ctx, slog.LevelWarn, "advertise address not published", logging.Err(err))
	}
}

// Forward sends r to the replica sid names when that replica is alive; it
// reports whether it answered the request.
func (r *Router) Forward(w http.ResponseWriter, req *http.Request, sid string) bool {
	if req.Header.Get(ForwardedHeader) != "" {
		return false // one hop only: the owner does not have it either
	}
	node, ok := NodeOf(sid)
	if !ok || node == r.cfg.Node {
		return false
	}
	u, err := r.lookup(req.Context(), node)
	if err != nil {
		return false
	}
	r.proxyFor(u).ServeHTTP(w, req)
	return true
}

var errNotAlive = errors.New("replica not alive")

// lookup is a live replica's published address.
func (r *Router) lookup(ctx context.Context, node string) (*url.URL, error) {
	now := time.Now()
	r.mu.Lock()
	c, ok := r.cache[node]
	r.mu.Unlock()
	if ok && now.Before(c.exp) {
		return c.u, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var addr *redis.StringCmd
	var alive *redis.IntCmd
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		addr = p.Get(ctx, rediskey.NodeAddr(node))
		alive = p.Exists(ctx, rediskey.NodeAlive(node))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("look up replica %s: %w", node, err)
	}
	if addr.Err() != nil || alive.Val() != 1 {
		return nil, errNotAlive
	}
	u, err := ParseAdvertise(addr.Val())
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if len(r.cache) > 1024 {
		clear(r.cache) // replicas come and go; never let it grow
	}
	r.cache[node] = cached{u: u, exp: now.Add(cacheFor)}
	r.mu.Unlock()
	return u, nil
}

func (r *Router) proxyFor(u *url.URL) *httputil.ReverseProxy {
	key := u.String()
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.proxy[key]; ok {
		return p
	}
	if len(r.proxy) > 1024 {
		clear(r.proxy)
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host // the owner checks Origin against Host
			pr.SetXForwarded()
			// The client's address as the first replica saw it.
			if xff := pr.In.Header.Get("X-Forwarded-For"); xff != "" {
				pr.Out.Header.Set("X-Forwarded-For", xff+", "+clientHost(pr.In.RemoteAddr))
			}
			pr.Out.Header.Set(ForwardedHeader, r.cfg.Node)
		},
		Transport:     r.tr,
		FlushInterval: -1,
		ErrorLog:      slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			r.log.LogAttrs(context.Background(), slog.LevelDebug, "forward to owner failed", logging.Err(err))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"code":1,"message":"Session ID unknown"}`))
		},
	}
	r.proxy[key] = p
	return p
}

func clientHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// ParseAdvertise validates an ADVERTISE_URL: http(s)://host:port, nothing
// else.
func ParseAdvertise(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("want http(s)://host:port, got %q", s)
	}
	u.Path = ""
	return u, nil
}

// DefaultAdvertise derives ADVERTISE_URL from the listen address: its host
// when it names one, else this machine's first non-loopback address (a
// container's or a pod's own IP), else loopback.
func DefaultAdvertise(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://127.0.0.1:8080"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
					host = n.IP.String()
					break
				}
			}
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}
