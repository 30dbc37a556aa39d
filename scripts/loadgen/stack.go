package loadgen

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"

	"orderpush/scripts/launch"
)

// Databases the order API of a local stack can run on.
const (
	DBSQLite   = "sqlite"
	DBPostgres = "postgres"
)

// defaultPGAdminURL is the PostgreSQL of this machine, as the tests use it.
const defaultPGAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// StackConfig describes a local stack for benchmarking.
type StackConfig struct {
	Dir      string // logs, SQLite files, built binaries
	Gateways int    // replicas, default 2
	RedisURL string // "" starts a private redis-server on a free port
	// PGAdminURL creates the PostgreSQL database of a postgres order API
	// (default PG_ADMIN_URL, else defaultPGAdminURL).
	PGAdminURL string
	Secret     string
	Binaries   launch.Binaries // built by StartStack when empty
	LogLevel   string          // of the services, default warn (logging is not what is measured)
	// Limits are the stack's limit settings until SetLimits changes them;
	// nil is CapacityLimits.
	Limits *Limits
}

// Limits are a scenario's limit settings: environment entries for the
// gateways and for the order API.
type Limits struct {
	Gateway, OrderAPI []string
}

// CapacityLimits turn off the limits a capacity run would measure instead
// of the system: it connects every socket from a few loopback addresses,
// often for one merchant, and places orders from few members as fast as
// the order API takes them; in the latency scenario one socket of each
// merchant sends a seen frame per order, over CLIENT_MSG_RATE as soon as a
// merchant gets more than a few orders a second.
var CapacityLimits = Limits{
	Gateway:  []string{"CONNECT_RATE=0", "MAX_CONNS_PER_MERCHANT=0", "CLIENT_MSG_RATE=0"},
	OrderAPI: []string{"ORDER_RATE=0"},
}

// Stack is a running local system: Redis, one order API, N gateways, as
// separate processes. Not safe for concurrent use.
type Stack struct {
	cfg    StackConfig
	limits Limits

	RedisURL    string
	OrderAPIURL string
	// OrderAPIPprofURL is the order API's PPROF_ADDR as an http URL; it
	// stays the same across StartOrderAPI.
	OrderAPIPprofURL string
	Database         string
	GatewayURLs      []string // ws://.../ws
	PprofURLs        []string
	PIDs             []int // gateway pids

	redis    *launch.Proc
	orderapi *launch.Proc
	gws      []*launch.Proc
	pgDBs    []string
	apiPort  int // kept across restarts: the gateways' ORDERAPI_URL points at it
	apiPprof int // kept across restarts: the profiler is built once per run
	gen      int // restart counter, for unique log names
}

// StartStack builds the binaries if needed and starts Redis (unless given),
// the order API on SQLite and the gateways, and waits until all are ready.
func StartStack(ctx context.Context, cfg StackConfig) (*Stack, error) {
	if cfg.Gateways <= 0 {
		cfg.Gateways = 2
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "warn"
	}
	if cfg.PGAdminURL == "" {
		cfg.PGAdminURL = os.Getenv("PG_ADMIN_URL")
	}
	if cfg.PGAdminURL == "" {
		cfg.PGAdminURL = defaultPGAdminURL
	}
	if cfg.Secret == "" {
		cfg.Secret = launch.NewSecret()
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	if cfg.Binaries.Gateway == "" {
		root, err := launch.RepoRoot()
		if err != nil {
			return nil, err
		}
		if cfg.Binaries, err = launch.Build(ctx, root, filepath.Join(cfg.Dir, "bin")); err != nil {
			return nil, err
		}
	}
	s := &Stack{cfg: cfg, RedisURL: cfg.RedisURL, limits: CapacityLimits}
	if cfg.Limits != nil {
		s.limits = *cfg.Limits
	}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	if s.RedisURL == "" {
		if err := s.startRedis(ctx); err != nil {
			return nil, err
		}
	}
	if err := s.StartOrderAPI(ctx, DBSQLite); err != nil {
		return nil, err
	}
	if err := s.RestartGateways(ctx); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// ServicePIDs are the pids of the order API and of Redis when this stack
// started it.
func (s *Stack) ServicePIDs() map[string]int {
	m := map[string]int{}
	if s.orderapi != nil {
		m["orderapi"] = s.orderapi.PID()
	}
	if s.redis != nil {
		m["redis"] = s.redis.PID()
	}
	return m
}

// Secret is the stack's JWT_SECRET.
func (s *Stack) Secret() []byte { return []byte(s.cfg.Secret) }

func (s *Stack) startRedis(ctx context.Context) error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server not on PATH (apt-get install redis-server, or give -redis): %w", err)
	}
	port, err := launch.FreePort()
	if err != nil {
		return err
	}
	p, err := launch.Start(context.WithoutCancel(ctx), launch.Spec{Name: "redis", Path: bin,
		Args:    []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", s.cfg.Dir},
		LogFile: filepath.Join(s.cfg.Dir, "redis.log")})
	if err != nil {
		return err
	}
	s.redis = p
	s.RedisURL = "redis://127.0.0.1:" + strconv.Itoa(port) + "/0"
	// redis-server has no /readyz: wait for its port through a Ping.
	e, err := NewEnv(EnvConfig{RedisURL: s.RedisURL, Secret: []byte(s.cfg.Secret)})
	if err != nil {
		return err
	}
	defer e.Close()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if err := e.Ping(wctx); err == nil {
			return nil
		} else if wctx.Err() != nil {
			return fmt.Errorf("redis-server did not answer: %w", err)
		}
		waitTick(wctx, 20*time.Millisecond)
	}
}

// StartOrderAPI (re)starts the order API on a fresh database of the kind
// given: a new SQLite file, or a new PostgreSQL database.
func (s *Stack) StartOrderAPI(ctx context.Context, db string) error {
	if s.orderapi != nil {
		_, _ = s.orderapi.Stop(launch.StopTimeout)
		s.orderapi = nil
	}
	s.gen++
	var dsn string
	switch db {
	case DBSQLite:
		dsn = "sqlite://" + filepath.Join(s.cfg.Dir, fmt.Sprintf("orders-%d.db", s.gen))
	case DBPostgres:
		u, err := s.createPG(ctx)
		if err != nil {
			return err
		}
		dsn = u
	default:
		return fmt.Errorf("database %q: want %s or %s", db, DBSQLite, DBPostgres)
	}
	if s.apiPort == 0 {
		port, err := launch.FreePort()
		if err != nil {
			return err
		}
		s.apiPort = port
	}
	if s.apiPprof == 0 {
		port, err := launch.FreePort()
		if err != nil {
			return err
		}
		s.apiPprof = port
		s.OrderAPIPprofURL = "http://127.0.0.1:" + strconv.Itoa(port)
	}
	addr := "127.0.0.1:" + strconv.Itoa(s.apiPort)
	p, err := launch.Start(context.WithoutCancel(ctx), launch.Spec{Name: "orderapi", Path: s.cfg.Binaries.OrderAPI,
		Env: append([]string{"ORDERAPI_ADDR=" + addr, "DATABASE_URL=" + dsn, "REDIS_URL=" + s.RedisURL,
			"JWT_SECRET=" + s.cfg.Secret, "LOG_LEVEL=" + s.cfg.LogLevel,
			"PPROF_ADDR=127.0.0.1:" + strconv.Itoa(s.apiPprof)}, s.limits.OrderAPI...),
		LogFile: filepath.Join(s.cfg.Dir, fmt.Sprintf("orderapi-%d.log", s.gen))})
	if err != nil {
		return err
	}
	s.orderapi, s.OrderAPIURL, s.Database = p, "http://"+addr, db
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return p.WaitReady(wctx, s.OrderAPIURL)
}

// SetLimits restarts the order API (on a fresh database of the same kind)
// and the gateways with the limit settings l.
func (s *Stack) SetLimits(ctx context.Context, l Limits) error {
	s.limits = l
	if err := s.StartOrderAPI(ctx, s.Database); err != nil {
		return err
	}
	return s.RestartGateways(ctx)
}

// SetGateways changes the number of gateway replicas the next
// RestartGateways starts.
func (s *Stack) SetGateways(n int) { s.cfg.Gateways = max(1, n) }

// RestartGateways stops the gateways (if running) and starts fresh ones, so
// a memory baseline is a new process's.
func (s *Stack) RestartGateways(ctx context.Context) error {
	s.stopGateways()
	s.gen++
	for i := range s.cfg.Gateways {
		port, err := launch.FreePort()
		if err != nil {
			return err
		}
		pport, err := launch.FreePort()
		if err != nil {
			return err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		paddr := "127.0.0.1:" + strconv.Itoa(pport)
		p, err := launch.Start(context.WithoutCancel(ctx), launch.Spec{Name: fmt.Sprintf("gateway-%d", i), Path: s.cfg.Binaries.Gateway,
			Env: append([]string{"GATEWAY_ADDR=" + addr, "NODE_ID=" + fmt.Sprintf("bench-gw%d-%d", i, s.gen),
				"REDIS_URL=" + s.RedisURL, "JWT_SECRET=" + s.cfg.Secret, "ORDERAPI_URL=" + s.OrderAPIURL,
				"PPROF_ADDR=" + paddr, "LOG_LEVEL=" + s.cfg.LogLevel}, s.limits.Gateway...),
			LogFile: filepath.Join(s.cfg.Dir, fmt.Sprintf("gateway-%d-%d.log", i, s.gen))})
		if err != nil {
			return err
		}
		s.gws = append(s.gws, p)
		s.GatewayURLs = append(s.GatewayURLs, "ws://"+addr+"/ws")
		s.PprofURLs = append(s.PprofURLs, "http://"+paddr)
		s.PIDs = append(s.PIDs, p.PID())
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err = p.WaitReady(wctx, "http://"+addr)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Stack) stopGateways() {
	for _, p := range s.gws {
		_, _ = p.Stop(launch.StopTimeout)
	}
	s.gws, s.GatewayURLs, s.PprofURLs, s.PIDs = nil, nil, nil, nil
}

// createPG makes a fresh database on the PostgreSQL server and returns its URL.
func (s *Stack) createPG(ctx context.Context) (string, error) {
	db, err := sql.Open("pgx", s.cfg.PGAdminURL)
	if err != nil {
		return "", err
	}
	defer db.Close()
	name := fmt.Sprintf("orderpush_bench_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := db.ExecContext(cctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database on PG_ADMIN_URL (is PostgreSQL running?): %w", err)
	}
	s.pgDBs = append(s.pgDBs, name)
	u, err := url.Parse(s.cfg.PGAdminURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// Close stops every process and drops the PostgreSQL databases it made.
func (s *Stack) Close() {
	s.stopGateways()
	if s.orderapi != nil {
		_, _ = s.orderapi.Stop(launch.StopTimeout)
		s.orderapi = nil
	}
	if s.redis != nil {
		s.redis.Kill()
		s.redis = nil
	}
	if len(s.pgDBs) == 0 {
		return
	}
	db, err := sql.Open("pgx", s.cfg.PGAdminURL)
	if err != nil {
		return
	}
	defer db.Close()
	var errs []error
	for _, name := range s.pgDBs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	s.pgDBs = nil
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(os.Stderr, "drop bench databases: %v\n", err)
	}
}
