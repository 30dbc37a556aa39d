package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// Attacks of the abuse scenario; they run together while honest clients
// receive orders.
const (
	AttackConnect = "connect" // one address opens sockets of one merchant at a high rate (CONNECT_RATE, MAX_CONNS_PER_MERCHANT)
	AttackFrames  = "frames"  // sockets send ping and process frames as fast as they can (CLIENT_MSG_RATE)
	AttackOrders  = "orders"  // one member places orders at a high rate (ORDER_RATE)
	AttackSilent  = "silent"  // sockets that stop reading, so never answer a ping (PING_TIMEOUT)
)

// AllAttacks is every attack, the default.
var AllAttacks = []string{AttackConnect, AttackFrames, AttackOrders, AttackSilent}

// perIP is how many sockets the scenario opens from one source address at
// most: below CONNECT_RATE's burst (twice the default 20/s), so honest
// sockets are never refused while they open.
const perIP = 25

// AbuseConfig sizes the abuse scenario.
type AbuseConfig struct {
	Sockets   int           // honest sockets in each phase
	Merchants int           // honest merchants in each phase (at most 50 sockets each: MAX_CONNS_PER_MERCHANT)
	Rate      float64       // honest orders per second, through POST /orders
	Duration  time.Duration // of each phase
	Workers   int           // honest requests in flight at most
	Drain     time.Duration
	Parallel  int
	Variant   string   // report label: the database behind the order API
	Attacks   []string // run together in the attack phase; AllAttacks when empty

	ConnectRate   float64 // connect flood: upgrade attempts per second from one address
	FloodSockets  int     // frame flood: sockets (each reconnects when closed)
	FloodRate     float64 // frame flood: frames per second per socket
	OrderRate     float64 // order flood: POST /orders per second with one member token
	SilentSockets int     // silent peers

	// PingInterval and PingTimeout are the gateways' PING_INTERVAL and
	// PING_TIMEOUT in this scenario: short, so silent peers go within the
	// attack phase.
	PingInterval, PingTimeout time.Duration
	// Settle is the wait after the attack ends before RSS and goroutines
	// are read again.
	Settle time.Duration
}

func (c *AbuseConfig) defaults() {
	c.Sockets = cmp0(c.Sockets, 1000)
	c.Merchants = cmp0(c.Merchants, 200)
	if c.Rate <= 0 {
		c.Rate = 500
	}
	if c.Duration <= 0 {
		c.Duration = 15 * time.Second
	}
	c.Workers = cmp0(c.Workers, 64)
	if c.Drain <= 0 {
		c.Drain = 10 * time.Second
	}
	c.Parallel = cmp0(c.Parallel, 64)
	if c.Variant == "" {
		c.Variant = "http"
	}
	if len(c.Attacks) == 0 {
		c.Attacks = AllAttacks
	}
	if c.ConnectRate <= 0 {
		c.ConnectRate = 500
	}
	c.FloodSockets = cmp0(c.FloodSockets, 200)
	if c.FloodRate <= 0 {
		c.FloodRate = 100
	}
	if c.OrderRate <= 0 {
		c.OrderRate = 1000
	}
	c.SilentSockets = cmp0(c.SilentSockets, 200)
	if c.PingInterval <= 0 {
		c.PingInterval = 2 * time.Second
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = 5 * time.Second
	}
	if c.Settle <= 0 {
		c.Settle = 3 * time.Second
	}
}

// Limits are the stack settings of the scenario: every limit at the
// contract's default (PROTOCOL.md "Limits and hostile clients"), written
// out so the figures say what they were taken with, and the keepalive of
// the config.
func (c AbuseConfig) Limits() Limits {
	c.defaults()
	return Limits{
		Gateway: []string{"CONNECT_RATE=20/s", "MAX_CONNS_PER_MERCHANT=50", "CLIENT_MSG_RATE=10/s",
			"PING_INTERVAL=" + c.PingInterval.String(), "PING_TIMEOUT=" + c.PingTimeout.String()},
		OrderAPI: []string{"ORDER_RATE=20/s"},
	}
}

func (c *AbuseConfig) has(a string) bool { return slices.Contains(c.Attacks, a) }

// Abuse measures what attackers cost honest clients. Two phases in one run,
// each with its own honest sockets and merchants, both open throughout:
// orders at cfg.Rate through POST /orders without an attack, then again
// while the attacks run. Latency, loss, gateway CPU and RSS of the attack
// phase are reported against the first phase (the "floor" column), with the
// refusals of every limit from /metrics and what each attacker got through.
// The stack's limits must be on (AbuseConfig.Limits); the attackers and
// the honest sockets come from distinct loopback addresses, so the stack
// must be local.
func Abuse(ctx context.Context, e *Env, cfg AbuseConfig, run int) (*Report, error) {
	cfg.defaults()
	if err := e.NeedGateways(); err != nil {
		return nil, err
	}
	if err := e.NeedOrderAPI(); err != nil {
		return nil, err
	}
	for _, a := range cfg.Attacks {
		if !slices.Contains(AllAttacks, a) {
			return nil, fmt.Errorf("attack %q: want one of %s", a, strings.Join(AllAttacks, ", "))
		}
	}
	for _, g := range e.Gateways {
		if ip := net.ParseIP(g.Hostname()); ip == nil || !ip.IsLoopback() || ip.To4() == nil {
			return nil, fmt.Errorf("abuse: gateway %s is not on 127.0.0.x: the scenario tells honest clients from attackers by loopback source address", g.Host)
		}
	}
	e.NextRun()
	r := &Report{Scenario: "abuse", Variant: cfg.Variant, Run: run, Started: time.Now()}

	// Source addresses: two honest ranges, then one range per attack.
	honestIPs := (cfg.Sockets + perIP - 1) / perIP
	addrs := &ipRange{next: 0}
	baseEnv := e.withSources(addrs.take(honestIPs), honestIPs)
	attackEnv := e.withSources(addrs.take(honestIPs), honestIPs)
	connectIP := addrs.take(1)
	floodBase, floodIPs := addrs.take((cfg.FloodSockets+perIP-1)/perIP), (cfg.FloodSockets+perIP-1)/perIP
	silentBase, silentIPs := addrs.take((cfg.SilentSockets+perIP-1)/perIP), (cfg.SilentSockets+perIP-1)/perIP
	if addrs.next > 250 {
		return nil, fmt.Errorf("abuse: needs %d source addresses, at most 250 (127.0.0.1..250): fewer sockets", addrs.next)
	}

	before, err := e.limitCounters(ctx)
	if err != nil {
		return nil, err
	}
	base, err := openHonest(ctx, baseEnv, "hb", cfg, r)
	if err != nil {
		return r, err
	}
	defer base.fl.Close()
	attack, err := openHonest(ctx, attackEnv, "ha", cfg, r)
	if err != nil {
		return r, err
	}
	defer attack.fl.Close()

	// Phase 1: no attack.
	cpu := e.startCPU()
	basePace, err := runFlow(ctx, e, base.fl, base.flow, cfg.Rate, cfg.Duration, cfg.Workers, cfg.Drain, fmt.Sprintf("abuse-base-run%d", run))
	if err != nil {
		return r, err
	}
	baseCPU := cpu.stop()
	baseStat := sumStats(e.gatewayStats(ctx))
	mid, err := e.limitCounters(ctx)
	if err != nil {
		return r, err
	}
	// The honest clients alone must not touch any limit, or the scenario
	// measures its own set-up.
	r.Add("honest_refusals", mid.sub(before).total(), "").Target = &Target{Op: "<=", Value: 0}

	// Phase 2: the same load while the attacks run.
	actx, stopAttacks := context.WithCancel(ctx)
	defer stopAttacks()
	var wg sync.WaitGroup
	atk := &attackers{e: e, cfg: cfg}
	if cfg.has(AttackConnect) {
		wg.Add(1)
		go func() { defer wg.Done(); atk.connectFlood(actx, connectIP) }()
	}
	if cfg.has(AttackFrames) {
		wg.Add(1)
		go func() { defer wg.Done(); atk.frameFlood(actx, floodBase, floodIPs) }()
	}
	if cfg.has(AttackOrders) {
		wg.Add(1)
		go func() { defer wg.Done(); atk.orderFlood(actx) }()
	}
	silentDone := make(chan silentResult, 1)
	if cfg.has(AttackSilent) {
		go func() { silentDone <- atk.silent(ctx, silentBase, silentIPs) }()
	}
	cpu = e.startCPU()
	start := time.Now()
	attackPace, flowErr := runFlow(ctx, e, attack.fl, attack.flow, cfg.Rate, cfg.Duration, cfg.Workers, cfg.Drain, fmt.Sprintf("abuse-attack-run%d", run))
	attackCPU := cpu.stop()
	attackStat := sumStats(e.gatewayStats(ctx))
	stopAttacks()
	wg.Wait()
	elapsed := time.Since(start)
	var silent silentResult
	if cfg.has(AttackSilent) {
		silent = <-silentDone
	}
	after, err := e.limitCounters(ctx)
	if err != nil {
		return r, err
	}
	atk.close()
	if flowErr != nil {
		return r, flowErr
	}
	// Attackers gone, honest sockets still open: back where phase 1 ended?
	waitTick(ctx, cfg.Settle)
	afterStat := sumStats(e.gatewayStats(ctx))

	socks := append(slices.Clone(base.fl.Socks()), attack.fl.Socks()...)
	base.fl.Close()
	attack.fl.Close()
	baseLat, baseD := base.flow.account(base.fl.Socks())
	attackLat, attackD := attack.flow.account(attack.fl.Socks())
	bs := baseLat.Summary()

	// The rate the orders really went out at: when every worker waits on a
	// slow order API the schedule slips and the phase runs longer.
	r.Add("rate", float64(attack.flow.total())/attackPace.Elapsed.Seconds(), "/s").Floor = float64(base.flow.total()) / basePace.Elapsed.Seconds()
	for _, p := range []struct {
		name string
		pr   PaceResult
	}{{"no-attack", basePace}, {"attack", attackPace}} {
		if p.pr.LateJobs > 0 {
			r.Notef("%s phase: schedule slipped: %d of %d orders >1ms late, max %s", p.name, p.pr.LateJobs, p.pr.Started, p.pr.MaxLag.Round(time.Millisecond))
		}
	}
	r.AddLatency("", attackLat.Summary(), &bs)
	r.AddDelivery("", attackD)
	r.Add("base_lost", float64(baseD.Lost), "frames").Target = &Target{Op: "<=", Value: 0}
	cores := func(u cpuUse, d time.Duration) float64 { return d.Seconds() / u.wall.Seconds() }
	if attackCPU.gateways >= 0 && baseCPU.gateways >= 0 {
		r.Add("gateway_cpu_cores", cores(attackCPU, attackCPU.gateways), "cores").Floor = cores(baseCPU, baseCPU.gateways)
	}
	if d, ok := attackCPU.services["orderapi"]; ok {
		r.Add("orderapi_cpu_cores", cores(attackCPU, d), "cores").Floor = cores(baseCPU, baseCPU.services["orderapi"])
	}
	r.Add("loadgen_cpu_cores", cores(attackCPU, attackCPU.self), "cores").Floor = cores(baseCPU, baseCPU.self)
	addStat := func(name string, s gatewayStat) {
		if s.RSS >= 0 && baseStat.RSS > 0 {
			r.Add(name+"rss", float64(s.RSS)/(1<<20), "MiB").Floor = float64(baseStat.RSS) / (1 << 20)
		}
		if s.Goroutines >= 0 && baseStat.Goroutines > 0 {
			r.Add(name+"goroutines", s.Goroutines, "").Floor = baseStat.Goroutines
		}
	}
	addStat("gateway_", attackStat)
	addStat("after_", afterStat)

	refused := after.sub(mid)
	for _, c := range limitSeries {
		r.Add(c.name, refused[c.name], "")
	}
	atk.report(r, elapsed)
	if cfg.has(AttackSilent) {
		r.Add("silent_opened", float64(silent.opened), "")
		// PROTOCOL.md "Limits and hostile clients": a silent socket leaves
		// presence within PING_INTERVAL + PING_TIMEOUT (+1 s of slack).
		r.Add("silent_online_after", float64(silent.online), "").Target = &Target{Op: "<=", Value: 0}
		if silent.gone >= 0 {
			r.Add("silent_gone_after", silent.gone.Seconds(), "s")
		} else {
			r.Notef("silent peers still online after three times PING_INTERVAL + PING_TIMEOUT + 1 s")
		}
		if silent.err != nil {
			r.Notef("silent peers: %v", silent.err)
		}
	}
	base.flow.notes(r)
	attack.flow.notes(r)
	if n := Drops(socks); len(n) > 0 {
		r.Notef("honest sockets closed early: %v", n)
	}
	return r, nil
}

// honest is one phase's honest clients.
type honest struct {
	fl   *Fleet
	flow *orderFlow
}

func openHonest(ctx context.Context, e *Env, scope string, cfg AbuseConfig, r *Report) (*honest, error) {
	merchants := make([]string, cfg.Merchants)
	for i := range merchants {
		merchants[i] = e.MerchantID(scope, i)
	}
	flow, err := newOrderFlow(e, ModeHTTP, merchants, int(cfg.Rate*cfg.Duration.Seconds()), 64)
	if err != nil {
		return nil, err
	}
	fl, err := NewFleet(e, merchants, FleetOptions{Record: true, RecordOrders: true})
	if err != nil {
		return nil, err
	}
	op := fl.Open(ctx, cfg.Sockets, 0, cfg.Parallel)
	if op.Failed > 0 {
		fl.Close()
		return nil, fmt.Errorf("abuse: %d of %d honest sockets failed to open: %v", op.Failed, cfg.Sockets, op.Errors)
	}
	return &honest{fl: fl, flow: flow}, nil
}

// ipRange hands out consecutive loopback source address offsets.
type ipRange struct{ next int }

func (a *ipRange) take(n int) int {
	base := a.next
	a.next += n
	return base
}

// withSources is a copy of e whose fleets dial from 127.0.0.(1+base) ..
// (base+n).
func (e *Env) withSources(base, n int) *Env {
	c := *e
	c.SourceBase, c.SourceIPs = base, max(1, n)
	return &c
}

func sumStats(ss []gatewayStat) gatewayStat {
	var t gatewayStat
	for _, s := range ss {
		if s.RSS < 0 || t.RSS < 0 {
			t.RSS = -1
		} else {
			t.RSS += s.RSS
		}
		if s.Goroutines < 0 || t.Goroutines < 0 {
			t.Goroutines = -1
		} else {
			t.Goroutines += s.Goroutines
		}
	}
	return t
}

// limitSeries are the refusal counters of every limit: the metric name in
// the report, the series on /metrics, and whether the order API has it
// (else it is summed over the gateways).
var limitSeries = []struct {
	name, series string
	orderAPI     bool
}{
	{"refused_connect_rate", `gateway_connects_total{result="rate_limited"}`, false},
	{"refused_per_merchant", `gateway_connects_total{result="too_many_connections"}`, false},
	{"refused_max_conns", `gateway_connects_total{result="max_conns"}`, false},
	{"frames_limited", "gateway_client_frames_limited_total", false},
	{"flood_closes", "gateway_flood_closes_total", false},
	{"dead_peer_closes", "gateway_dead_peer_closes_total", false},
	{"orders_limited", "orderapi_orders_rate_limited_total", true},
}

type counters map[string]float64

func (c counters) sub(o counters) counters {
	d := counters{}
	for k, v := range c {
		d[k] = v - o[k]
	}
	return d
}

func (c counters) total() float64 {
	var t float64
	for _, v := range c {
		t += v
	}
	return t
}

// limitCounters scrapes every gateway's and the order API's /metrics once.
func (e *Env) limitCounters(ctx context.Context) (counters, error) {
	c := counters{}
	scrape := func(url string, orderAPI bool) error {
		body, err := scrape(ctx, e.HTTP, url)
		if err != nil {
			return err
		}
		for _, s := range limitSeries {
			if s.orderAPI != orderAPI {
				continue
			}
			v, err := seriesValue(body, s.series)
			if err != nil {
				return fmt.Errorf("%s: %w", url, err)
			}
			c[s.name] += v
		}
		return nil
	}
	for i := range e.Gateways {
		if err := scrape(e.MetricsURL(i), false); err != nil {
			return nil, err
		}
	}
	if err := scrape(e.OrderAPI+"/metrics", true); err != nil {
		return nil, err
	}
	return c, nil
}

// seriesValue finds the sample of one exact series (name and labels as the
// Prometheus text format writes them) in a scrape.
func seriesValue(body []byte, series string) (float64, error) {
	for line := range bytes.Lines(body) {
		rest, ok := bytes.CutPrefix(line, []byte(series+" "))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) == 0 {
			break
		}
		return strconv.ParseFloat(f[0], 64)
	}
	return 0, fmt.Errorf("no series %s", series)
}

// attackers run the attacks and count, from the client's side, what each
// got through and how it was refused.
type attackers struct {
	e   *Env
	cfg AbuseConfig

	mu     sync.Mutex
	conns  []*wsConn      // admitted attack sockets, closed at the end
	counts map[string]int // "<attack>: <outcome>" -> count

	connectTried, connectOK atomic.Int64
	framesSent, framesOK    atomic.Int64
	ordersTried, ordersOK   atomic.Int64
}

func (a *attackers) count(attack, outcome string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.counts == nil {
		a.counts = map[string]int{}
	}
	a.counts[attack+": "+outcome]++
}

func (a *attackers) keep(c *wsConn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conns = append(a.conns, c)
}

func (a *attackers) close() {
	a.mu.Lock()
	cs := a.conns
	a.conns = nil
	a.mu.Unlock()
	for _, c := range cs {
		c.CloseNow()
	}
}

func (a *attackers) report(r *Report, elapsed time.Duration) {
	per := func(n *atomic.Int64) float64 { return float64(n.Load()) / elapsed.Seconds() }
	if a.cfg.has(AttackConnect) {
		r.Add("connect_tried_per_s", per(&a.connectTried), "/s")
		r.Add("connect_admitted", float64(a.connectOK.Load()), "")
	}
	if a.cfg.has(AttackFrames) {
		r.Add("frames_sent_per_s", per(&a.framesSent), "/s")
		r.Add("frames_admitted_per_s", per(&a.framesOK), "/s")
	}
	if a.cfg.has(AttackOrders) {
		r.Add("orders_tried_per_s", per(&a.ordersTried), "/s")
		r.Add("orders_admitted_per_s", per(&a.ordersOK), "/s")
	}
	keys := make([]string, 0, len(a.counts))
	for k := range a.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r.Notef("%s x%d", k, a.counts[k])
	}
}

// token mints a merchant token for an attacker's merchant.
func (a *attackers) token(scope string, i int) string {
	t, err := token.Mint(a.e.Secret, token.RoleMerchant, a.e.MerchantID(scope, i), 6*time.Hour)
	if err != nil {
		panic(err) // the secret was checked by NewEnv
	}
	return t
}

// dial opens one attack socket from 127.0.0.(1+src) and reads its hello.
func (a *attackers) dial(ctx context.Context, src, gw int, tok string) (*wsConn, error) {
	u := *a.e.Gateways[gw%len(a.e.Gateways)]
	q := u.Query()
	q.Set("token", tok)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+src))}}
	c, err := dialWS(ctx, d, &u, nil)
	if err != nil {
		return nil, err
	}
	dl, _ := ctx.Deadline()
	_ = c.nc.SetReadDeadline(dl)
	msg, err := c.ReadMessage()
	if err == nil {
		var h Head
		if h, err = ParseHead(msg); err == nil && h.Event != wire.EventHello {
			err = fmt.Errorf("first frame is %q, not hello", h.Event)
		}
	}
	if err != nil {
		c.CloseNow()
		return nil, fmt.Errorf("read hello: %w", err)
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	return c, nil
}

// drain reads c until it fails, answering pings, and returns why it ended.
func drain(c *wsConn, frame func([]byte)) error {
	for {
		msg, err := c.ReadMessage()
		if err != nil {
			return err
		}
		if frame != nil {
			SplitFrames(msg, frame)
		}
	}
}

// outcome names a failed dial or a socket's end for the tallies, without
// the addresses network errors carry.
func outcome(err error) string {
	var ce *CloseError
	switch {
	case errors.As(err, &ce):
		return "closed " + strconv.Itoa(ce.Code) + " " + ce.Reason
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by the server without a close frame (EOF)"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset by the server"
	case errors.Is(err, net.ErrClosed):
		return "closed by the attacker: a write failed or stalled for 5 s"
	}
	return errKey(err)
}

// connectFlood opens sockets of one merchant from one address at
// cfg.ConnectRate and holds the ones admitted. The rate is bounded because
// each refused attempt leaves a client port in TIME_WAIT; one address has
// about 28k.
func (a *attackers) connectFlood(ctx context.Context, src int) {
	tok := a.token("xc", 0)
	Pace(ctx, a.cfg.ConnectRate, time.Hour, 1<<30, 64, func(ctx context.Context, i int) {
		a.connectTried.Add(1)
		c, err := a.dial(ctx, src, i, tok)
		if err != nil {
			if ctx.Err() == nil {
				a.count(AttackConnect, outcome(err))
			}
			return
		}
		a.connectOK.Add(1)
		a.keep(c)
		go func() { _ = drain(c, nil) }()
	})
}

// frameFlood keeps cfg.FloodSockets sockets sending ping and process frames
// at cfg.FloodRate each; a socket the gateway closes dials again.
func (a *attackers) frameFlood(ctx context.Context, base, ips int) {
	var wg sync.WaitGroup
	for i := range a.cfg.FloodSockets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := a.token("xf", i/40) // under MAX_CONNS_PER_MERCHANT
			for ctx.Err() == nil {
				c, err := a.dial(ctx, base+i%ips, i, tok)
				if err != nil {
					if ctx.Err() == nil {
						a.count(AttackFrames, "dial "+outcome(err))
					}
					waitTick(ctx, 250*time.Millisecond)
					continue
				}
				a.flood(ctx, c)
			}
		}()
	}
	wg.Wait()
}

// flood sends frames on c until the gateway closes it or ctx ends. Its
// reader counts the answers: a pong or a process result is a frame the
// gateway acted on; an error rate_limited is a refusal notice.
func (a *attackers) flood(ctx context.Context, c *wsConn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := drain(c, func(fr []byte) {
			h, err := ParseHead(fr)
			if err != nil {
				return
			}
			switch h.Event {
			case wire.EventPong:
				a.framesOK.Add(1)
			case wire.EventError:
				var e struct {
					Data wire.ErrorData `json:"data"`
				}
				_ = json.Unmarshal(fr, &e)
				if e.Data.Code == wire.CodeRateLimited {
					a.count(AttackFrames, "error frame rate_limited")
				} else {
					a.framesOK.Add(1) // a process frame the order API answered
				}
			}
		})
		if ctx.Err() == nil {
			a.count(AttackFrames, outcome(err))
		}
	}()
	ping := []byte(`{"event":"ping"}`)
	process := []byte(`{"event":"process","data":{"orderNo":"` + wire.NewOrderNo("lgx", time.Now()) + `"}}`)
	t := time.NewTicker(time.Duration(float64(time.Second) / a.cfg.FloodRate))
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			c.CloseNow()
			<-done
			return
		case <-done:
			c.CloseNow()
			return
		case <-t.C:
		}
		fr := ping
		if n%2 == 1 {
			fr = process
		}
		if c.WriteText(fr) != nil {
			c.CloseNow()
			<-done
			return
		}
		a.framesSent.Add(1)
	}
}

// orderFlood places orders with one member token at cfg.OrderRate.
func (a *attackers) orderFlood(ctx context.Context) {
	tok, err := token.Mint(a.e.Secret, token.RoleMember, a.e.UserID(1<<20), 6*time.Hour)
	if err != nil {
		panic(err) // the secret was checked by NewEnv
	}
	merchant := a.e.MerchantID("xo", 0)
	Pace(ctx, a.cfg.OrderRate, time.Hour, 1<<30, 32, func(ctx context.Context, _ int) {
		a.ordersTried.Add(1)
		_, status, err := a.e.PostOrder(ctx, tok, merchant)
		switch {
		case err == nil:
			a.ordersOK.Add(1)
		case ctx.Err() == nil:
			a.count(AttackOrders, statusKey(status, err))
		}
	})
}

// silentResult is what became of the silent peers.
type silentResult struct {
	opened int
	online int           // still counted online at the contract's bound
	gone   time.Duration // last one opened to none online; -1: not within three times the bound
	err    error
}

// silent opens cfg.SilentSockets sockets that never read after their
// hello, then polls presence until it no longer counts any of them. The
// contract's bound (PROTOCOL.md "Limits and hostile clients": a dead peer
// leaves presence within PING_INTERVAL + PING_TIMEOUT, plus 1 s of slack,
// after the last one opened) decides online; the wait goes on to three
// times the bound so that how long it really took is known too.
func (a *attackers) silent(ctx context.Context, base, ips int) silentResult {
	merchants := (a.cfg.SilentSockets + 39) / 40
	var opened atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range a.cfg.SilentSockets {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := a.dial(ctx, base+i%ips, i, a.token("xs", i%merchants))
			if err != nil {
				a.count(AttackSilent, "dial "+outcome(err))
				return
			}
			opened.Add(1)
			a.keep(c)
		}()
	}
	wg.Wait()
	res := silentResult{opened: int(opened.Load()), online: -1, gone: -1}
	online, err := a.e.onlineFunc()
	if err != nil {
		res.err = err
		res.online = res.opened
		return res
	}
	last := time.Now()
	span := a.cfg.PingInterval + a.cfg.PingTimeout + time.Second
	bound := last.Add(span)
	dctx, cancel := context.WithDeadline(ctx, last.Add(3*span))
	defer cancel()
	for {
		at := time.Now() // a poll takes a while on a busy machine: it counts from its start
		n := 0
		for m := range merchants {
			got, err := online(dctx, a.e.MerchantID("xs", m))
			if err != nil {
				res.err = err
				n = res.opened // unknown: count them all as still there
				break
			}
			n += got
		}
		if res.online < 0 && (n == 0 || at.After(bound)) {
			res.online = n
		}
		if n == 0 {
			res.gone = at.Sub(last)
			return res
		}
		if dctx.Err() != nil {
			if res.online < 0 { // ended before the bound
				res.online = n
			}
			return res
		}
		waitTick(dctx, 100*time.Millisecond)
	}
}
