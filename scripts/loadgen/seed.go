package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"orderpush/pkg/token"
	"orderpush/scripts/launch"
)

// The seed stack is the design this project replaces: a Node socket.io 4
// server with the Redis adapter, the JWT in the handshake query, order
// counts in memory and no database. The bench measures it next to ours, in
// the same run, on the same Redis, with the same sockets, merchants and
// rates. The repository holds none of its code: SeedConfig.Dir is a copy
// with node_modules installed (scripts/BENCHMARKS.md, "The seed stack as a
// peer", says how to make one).

// SeedConfig locates the seed stack.
type SeedConfig struct {
	Dir      string // server.js and node_modules; "" for no seed stack
	Replicas int    // default 2, as our gateways
	Node     string // the node binary, default "node" on PATH
}

// SeedStack is the seed server's replicas, started by StartSeed.
type SeedStack struct {
	cfg      SeedConfig
	redisURL string
	secret   string
	logDir   string
	gen      int

	URLs  []string // http://127.0.0.1:port of each replica
	procs []*launch.Proc
}

// StartSeed starts cfg.Replicas seed servers on redisURL with secret.
func StartSeed(ctx context.Context, cfg SeedConfig, redisURL, secret, logDir string) (*SeedStack, error) {
	if cfg.Replicas <= 0 {
		cfg.Replicas = 2
	}
	if cfg.Node == "" {
		cfg.Node = "node"
	}
	node, err := exec.LookPath(cfg.Node)
	if err != nil {
		return nil, fmt.Errorf("seed stack: %w", err)
	}
	cfg.Node = node
	for _, need := range []string{"server.js", "node_modules"} {
		if _, err := os.Stat(filepath.Join(cfg.Dir, need)); err != nil {
			return nil, fmt.Errorf("seed stack: %s has no %s (a copy of the seed server after npm ci): %w", cfg.Dir, need, err)
		}
	}
	s := &SeedStack{cfg: cfg, redisURL: redisURL, secret: secret, logDir: logDir}
	if err := s.Restart(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Restart stops the replicas and starts fresh ones, so an idle memory
// baseline is a new process's.
func (s *SeedStack) Restart(ctx context.Context) error {
	s.Close()
	s.gen++
	for i := range s.cfg.Replicas {
		port, err := launch.FreePort()
		if err != nil {
			return err
		}
		p, err := launch.Start(context.WithoutCancel(ctx), launch.Spec{Name: fmt.Sprintf("seed-%d", i), Path: s.cfg.Node,
			Args: []string{"server.js"}, Dir: s.cfg.Dir,
			Env: []string{"PORT=" + strconv.Itoa(port), "HOST=127.0.0.1", "REDIS_URL=" + s.redisURL, "JWT_SECRET=" + s.secret,
				"NODE_ENV=production"},
			LogFile: filepath.Join(s.logDir, fmt.Sprintf("seed-%d-%d.log", i, s.gen))})
		if err != nil {
			return err
		}
		s.procs = append(s.procs, p)
		base := "http://127.0.0.1:" + strconv.Itoa(port)
		s.URLs = append(s.URLs, base)
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = p.WaitHTTP(wctx, base+"/healthz")
		cancel()
		if err != nil {
			return fmt.Errorf("seed replica %d: %w", i, err)
		}
	}
	return nil
}

// PIDs are the replicas' process ids.
func (s *SeedStack) PIDs() []int {
	pids := make([]int, len(s.procs))
	for i, p := range s.procs {
		pids[i] = p.PID()
	}
	return pids
}

// Close stops every replica.
func (s *SeedStack) Close() {
	for _, p := range s.procs {
		_, _ = p.Stop(launch.StopTimeout)
	}
	s.procs, s.URLs = nil, nil
}

// sioSock is one socket.io client of the seed stack. Its reader goroutine
// records every "order" event carrying an order id (sioConn answers the
// server's pings).
type sioSock struct {
	merchant int
	conn     *sioConn
	got      []seedReceipt // owned by the reader until done is closed
	seen     atomic.Int64
	done     chan struct{}
	closing  atomic.Bool
	err      error
}

type seedReceipt struct {
	job int
	at  time.Duration
}

// seedDial opens a socket.io session on a seed replica: the token in the
// handshake query, where the seed reads it (dialSIO's CONNECT carries it
// too, which the seed ignores).
func seedDial(ctx context.Context, base, tok string, timeout time.Duration) (*sioConn, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	u.Scheme, u.Path = "ws", "/socket.io/"
	u.RawQuery = "EIO=4&transport=websocket&token=" + url.QueryEscape(tok)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return dialSIO(ctx, &net.Dialer{}, u, tok)
}

// seedOrderPrefix starts every order event the load generator caused: the
// seed server writes the order object with the id it was posted with first.
var seedOrderPrefix = []byte(`"order":{"id":"`)

// seedJob returns the job index in an order event as sioConn hands it over
// ({"event":"order",<the event's object>}), or -1 (the event each socket
// gets on connecting carries no order).
func seedJob(msg []byte) int {
	if !bytes.HasPrefix(msg, []byte(`{"event":"order",`)) {
		return -1
	}
	i := bytes.Index(msg, seedOrderPrefix)
	if i < 0 {
		return -1
	}
	rest := msg[i+len(seedOrderPrefix):]
	end := bytes.IndexByte(rest, '"')
	// The ids are the job indexes the load generator wrote: canonical
	// decimal, no sign, no leading zero, well inside an int.
	digits := rest[:max(end, 0)]
	if end <= 0 || end > 9 || (digits[0] == '0' && end > 1) {
		return -1
	}
	n := 0
	for _, c := range digits {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func (s *sioSock) read(e *Env) {
	defer close(s.done)
	for {
		msg, err := s.conn.ReadMessage()
		if err != nil {
			if !s.closing.Load() {
				s.err = err
			}
			return
		}
		if job := seedJob(msg); job >= 0 {
			s.got = append(s.got, seedReceipt{job: job, at: e.Now()})
			s.seen.Add(1)
		}
	}
}

// seedFleet is the sockets of one seed scenario.
type seedFleet struct {
	socks []*sioSock
}

func (f *seedFleet) seen() int64 {
	var n int64
	for _, s := range f.socks {
		n += s.seen.Load()
	}
	return n
}

func (f *seedFleet) close() {
	for _, s := range f.socks {
		s.closing.Store(true)
		s.conn.CloseNow()
	}
	for _, s := range f.socks {
		<-s.done
	}
}

// openSeed opens n sockets round-robin over the replicas, socket k for
// merchant k % len(merchants), parallel dials at a time.
func openSeed(ctx context.Context, e *Env, st *SeedStack, merchants []string, n, parallel int) (*seedFleet, OpenResult, error) {
	toks := make([]string, len(merchants))
	for i, m := range merchants {
		t, err := token.Mint(e.Secret, token.RoleMerchant, m, 6*time.Hour)
		if err != nil {
			return nil, OpenResult{}, err
		}
		toks[i] = t
	}
	res := OpenResult{Errors: map[string]int{}, PerGateway: make([]int, len(st.URLs))}
	f := &seedFleet{}
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range max(1, min(parallel, n)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				k := int(next.Add(1) - 1)
				if k >= n {
					return
				}
				g := k % len(st.URLs)
				t0 := time.Now()
				c, err := seedDial(ctx, st.URLs[g], toks[k%len(merchants)], 15*time.Second)
				mu.Lock()
				if err != nil {
					res.Failed++
					res.Errors[errKey(err)]++
				} else {
					res.Connects.Add(time.Since(t0))
					res.PerGateway[g]++
					s := &sioSock{merchant: k % len(merchants), conn: c, done: make(chan struct{})}
					f.socks = append(f.socks, s)
					go s.read(e)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Opened = len(f.socks)
	if res.Opened == 0 {
		f.close()
		return nil, res, fmt.Errorf("seed: no socket opened: %v", res.Errors)
	}
	return f, res, nil
}

// seedEnv is e with the seed replicas in the gateways' place, for the CPU
// figures (gateway_* are the seed's node processes).
func seedEnv(e *Env, st *SeedStack) *Env {
	return &Env{GatewayPIDs: st.PIDs(), ServicePIDs: map[string]int{"redis": e.ServicePIDs["redis"]}}
}

// SeedLatency is the latency scenario against the seed stack: the same
// sockets and merchants, orders at cfg.Rate through the seed's POST /orders
// (round-robin over its replicas), from the start of each request to the
// event on every socket of the merchant.
func SeedLatency(ctx context.Context, e *Env, st *SeedStack, cfg LatencyConfig, run int) (*Report, error) {
	cfg.defaults()
	e.NextRun()
	r := &Report{Scenario: "latency", Variant: cfg.Variant, Run: run, Started: time.Now()}
	merchants := make([]string, cfg.Merchants)
	for i := range merchants {
		merchants[i] = e.MerchantID("s", i)
	}
	fl, op, err := openSeed(ctx, e, st, merchants, cfg.Sockets, cfg.Parallel)
	if err != nil {
		return r, err
	}
	defer fl.close()
	if op.Failed > 0 {
		r.Notef("%d of %d sockets failed to open: %v", op.Failed, cfg.Sockets, op.Errors)
	}
	total := int(cfg.Rate * cfg.Duration.Seconds())
	sendAt := make([]atomic.Int64, total)
	published := make([]atomic.Int64, len(merchants))
	var failed atomic.Int64
	var reqMu sync.Mutex
	var reqLat Latencies
	errs := map[string]int{}
	send := func(ctx context.Context, i int) {
		m := i % len(merchants)
		body := fmt.Sprintf(`{"merchantId":%q,"date":"2022-06-22","price":36,"id":"%d"}`, merchants[m], i)
		t0 := e.Now()
		sendAt[i].Store(int64(t0))
		status, err := seedPost(ctx, e.HTTP, st.URLs[i%len(st.URLs)]+"/orders", body)
		reqMu.Lock()
		defer reqMu.Unlock()
		if err != nil {
			failed.Add(1)
			errs[statusKey(status, err)]++
			return
		}
		published[m].Add(1)
		reqLat.Add(e.Now() - t0)
	}
	expected := func() int64 {
		var n int64
		for _, s := range fl.socks {
			n += published[s.merchant].Load()
		}
		return n
	}
	cpu := seedEnv(e, st).startCPU()
	pr := Pace(ctx, cfg.Rate, cfg.Duration, total, cfg.Workers, send)
	dctx, cancel := context.WithTimeout(ctx, cfg.Drain)
	for fl.seen() < expected() && dctx.Err() == nil {
		waitTick(dctx, 5*time.Millisecond)
	}
	cancel()
	cpu.addCPU(r, "")
	fl.close()
	var lat Latencies
	var d Delivery
	for _, s := range fl.socks {
		want := published[s.merchant].Load()
		seen := make(map[int]bool, want)
		for _, rc := range s.got {
			if rc.job >= total || rc.job%len(merchants) != s.merchant || seen[rc.job] {
				d.Stale++
				continue
			}
			seen[rc.job] = true
			lat.Add(rc.at - time.Duration(sendAt[rc.job].Load()))
		}
		d.Sockets++
		d.Expected += want
		d.Received += int64(len(seen))
		d.Lost += max(0, want-int64(len(seen)))
		if s.err != nil {
			r.Notef("socket closed early: %v", s.err)
		}
	}
	r.Add("sockets", float64(op.Opened), "")
	r.Add("rate", cfg.Rate, "/s")
	r.AddLatency("", lat.Summary(), nil)
	r.AddDelivery("", d)
	rs := reqLat.Summary()
	r.Add("request_p50", ms(rs.P50), "ms")
	r.Add("request_p99", ms(rs.P99), "ms")
	if pr.LateJobs > 0 {
		r.Notef("schedule slipped: %d of %d sends >1ms late, max %s", pr.LateJobs, pr.Started, pr.MaxLag.Round(time.Microsecond))
	}
	for k, n := range errs {
		r.Notef("%d orders failed: %s", n, k)
	}
	r.Notef("seed stack: gateway_* figures are its %d node replicas", len(st.URLs))
	if failed.Load() == int64(total) {
		return r, errors.New("seed: every order failed")
	}
	return r, ctx.Err()
}

func seedPost(ctx context.Context, hc *http.Client, u, body string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusCreated {
		return resp.StatusCode, fmt.Errorf("POST /orders: %d %.200s", resp.StatusCode, b.Bytes())
	}
	return resp.StatusCode, nil
}

// SeedIdle is the idle memory scenario against freshly started seed
// replicas: RSS per socket after opening cfg.Sockets over cfg.Merchants.
func SeedIdle(ctx context.Context, e *Env, st *SeedStack, cfg IdleConfig, run int) (*Report, error) {
	cfg.defaults()
	if err := st.Restart(ctx); err != nil {
		return nil, err
	}
	e.NextRun()
	r := &Report{Scenario: "idle", Variant: "seed", Run: run, Started: time.Now()}
	merchants := make([]string, cfg.Merchants)
	for i := range merchants {
		merchants[i] = e.MerchantID("si", i)
	}
	pids := st.PIDs()
	before := make([]int64, len(pids))
	for i, pid := range pids {
		before[i], _ = RSS(pid)
	}
	cpu := seedEnv(e, st).startCPU()
	fl, res, err := openSeed(ctx, e, st, merchants, cfg.Sockets, cfg.Parallel)
	if err != nil {
		return r, err
	}
	defer fl.close()
	if gw := cpu.addCPU(r, "connect_"); gw >= 0 && res.Opened > 0 {
		r.Add("connect_gateway_cpu_per_connect", float64(gw.Microseconds())/float64(res.Opened), "us")
	}
	r.Add("sockets", float64(res.Opened), "")
	r.Add("failed", float64(res.Failed), "").Target = &Target{Op: "<=", Value: 0}
	r.Add("connects_per_s", float64(res.Opened)/res.Elapsed.Seconds(), "/s")
	waitTick(ctx, cfg.Settle)
	var sum int64
	for i, pid := range pids {
		after, err := RSS(pid)
		if err != nil || before[i] < 0 {
			return r, fmt.Errorf("seed replica %d RSS: %w", i, err)
		}
		sum += after - before[i]
	}
	r.Add("rss_per_socket", float64(sum)/float64(res.Opened)/1024, "KiB")
	for k, n := range res.Errors {
		r.Notef("%d connects failed: %s", n, k)
	}
	return r, nil
}
