package launch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SystemSpec describes a system for a test: one order API and some gateway
// replicas on one Redis, each a process of the built binaries.
type SystemSpec struct {
	Bins     Binaries
	RedisURL string // required
	// DatabaseURL for the order API; empty: SQLite in a test temp dir.
	DatabaseURL string
	Gateways    int    // replicas; 0 means 2
	Secret      string // JWT_SECRET; empty: a fresh NewSecret
	Env         []string
	OrderAPIEnv []string // added after Env for the order API only
	GatewayEnv  []string // added after Env for every gateway
	// ReadyTimeout bounds each /readyz wait; 0 means 90 s (race-built
	// binaries on a busy machine start slowly).
	ReadyTimeout time.Duration
}

// Service is one running process of a System.
type Service struct {
	Name string
	Node string // NODE_ID; gateways only
	Addr string // 127.0.0.1:port
	URL  string // http://127.0.0.1:port
	Proc *Proc
}

// WS is the gateway's socket URL, ws://127.0.0.1:port/ws.
func (s *Service) WS() string { return "ws://" + s.Addr + "/ws" }

// System is a started SystemSpec.
type System struct {
	Secret   []byte
	OrderAPI *Service
	Gateways []*Service

	orderAPISpec Spec          // how OrderAPI was started, for RestartOrderAPI
	readyTimeout time.Duration // SystemSpec.ReadyTimeout
	starts       int           // order API processes started
}

// Token mints a token of the system's secret, valid for an hour.
func (s *System) Token(role, sub string) string { return MintToken(s.Secret, role, sub, time.Hour) }

// StartSystemT starts spec's processes for a test (see StartT: they stop at
// cleanup and must exit 0 then) and waits until every one is ready. Gateway
// node ids are unique per call ("gw-<random>-0", ...), so tests may share a
// Redis. Logs go to the test's temp dir and are printed when it fails.
func StartSystemT(t testing.TB, spec SystemSpec) *System {
	t.Helper()
	if spec.RedisURL == "" {
		t.Fatal("launch: SystemSpec.RedisURL is required")
	}
	if spec.Gateways == 0 {
		spec.Gateways = 2
	}
	if spec.Secret == "" {
		spec.Secret = NewSecret()
	}
	if spec.ReadyTimeout == 0 {
		spec.ReadyTimeout = 90 * time.Second
	}
	dir := t.TempDir()
	if spec.DatabaseURL == "" {
		spec.DatabaseURL = "sqlite://" + filepath.Join(dir, "orders.db")
	}
	common := append([]string{
		"REDIS_URL=" + spec.RedisURL, "JWT_SECRET=" + spec.Secret, "LOG_FORMAT=json", "LOG_LEVEL=info",
	}, spec.Env...)
	sys := &System{Secret: []byte(spec.Secret), readyTimeout: spec.ReadyTimeout}

	newService := func(name string) *Service {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		return &Service{Name: name, Addr: addr, URL: "http://" + addr}
	}
	sys.OrderAPI = newService("orderapi")
	env := append(append([]string{}, common...), "ORDERAPI_ADDR="+sys.OrderAPI.Addr, "DATABASE_URL="+spec.DatabaseURL)
	sys.orderAPISpec = Spec{
		Name: "orderapi", Path: spec.Bins.OrderAPI, LogFile: filepath.Join(dir, "orderapi.log"),
		Env: append(env, spec.OrderAPIEnv...),
	}
	sys.OrderAPI.Proc = StartT(t, sys.orderAPISpec)
	sys.starts = 1
	run := randomID()
	for i := range spec.Gateways {
		g := newService("gateway-" + strconv.Itoa(i))
		g.Node = fmt.Sprintf("gw-%s-%d", run, i)
		env := append(append([]string{}, common...),
			"GATEWAY_ADDR="+g.Addr, "NODE_ID="+g.Node, "ORDERAPI_URL="+sys.OrderAPI.URL,
			// The dashboard a gateway serves calls this order API directly.
			"DASHBOARD_API_URL="+sys.OrderAPI.URL)
		g.Proc = StartT(t, Spec{
			Name: g.Name, Path: spec.Bins.Gateway, LogFile: filepath.Join(dir, g.Name+".log"),
			Env: append(env, spec.GatewayEnv...),
		})
		sys.Gateways = append(sys.Gateways, g)
	}
	for _, s := range append([]*Service{sys.OrderAPI}, sys.Gateways...) {
		ctx, cancel := context.WithTimeout(t.Context(), spec.ReadyTimeout)
		err := s.Proc.WaitReady(ctx, s.URL)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	return sys
}

// RestartOrderAPI starts the order API again after its process exited (a
// test killed it): the same settings, address and database, a new log file
// (orderapi-2.log, ...). It waits until the new process is ready.
func (s *System) RestartOrderAPI(t testing.TB) {
	t.Helper()
	if !s.OrderAPI.Proc.Exited() {
		t.Fatal("launch: RestartOrderAPI while the order API still runs")
	}
	s.starts++
	spec := s.orderAPISpec
	spec.LogFile = strings.TrimSuffix(spec.LogFile, ".log") + "-" + strconv.Itoa(s.starts) + ".log"
	s.OrderAPI.Proc = StartT(t, spec)
	ctx, cancel := context.WithTimeout(t.Context(), s.readyTimeout)
	defer cancel()
	if err := s.OrderAPI.Proc.WaitReady(ctx, s.OrderAPI.URL); err != nil {
		t.Fatal(err)
	}
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
