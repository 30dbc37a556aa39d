package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RSS returns the resident set size of process pid in bytes, from the VmRSS
// line of /proc/<pid>/status.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("rss of %d: %w", pid, err)
	}
	return parseVmRSS(b)
}

func parseVmRSS(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS %q: %w", f[0], err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no VmRSS line")
}

// MetricValues scrapes a Prometheus text endpoint once and returns the value
// of the first sample of each metric named.
func MetricValues(ctx context.Context, hc *http.Client, url string, names ...string) ([]float64, error) {
	body, err := scrape(ctx, hc, url)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(names))
	for i, n := range names {
		if out[i], err = parseMetric(bytes.NewReader(body), n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// MetricValue scrapes a Prometheus text endpoint and returns the value of the
// first sample of a metric (e.g. go_goroutines).
func MetricValue(ctx context.Context, hc *http.Client, url, name string) (float64, error) {
	v, err := MetricValues(ctx, hc, url, name)
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// scrape reads a Prometheus text endpoint (at most 16 MiB).
func scrape(ctx context.Context, hc *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: status %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return body, nil
}

func parseMetric(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name)
		if !ok || rest == "" {
			continue
		}
		switch rest[0] {
		case ' ':
		case '{': // name{labels} value [timestamp]
			i := strings.LastIndexByte(rest, '}')
			if i < 0 {
				continue
			}
			rest = rest[i+1:]
		default: // another metric with this prefix
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		x, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %q: %w", name, f[0], err)
		}
		return x, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// RaiseFileLimit raises RLIMIT_NOFILE as far as allowed: to want for both
// soft and hard limits when the process may (root), else the soft limit to
// the hard one. Child processes started afterwards inherit it, which is how
// locally launched gateways get room for 50k sockets each.
func RaiseFileLimit(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && want > n {
			want = n
		}
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: max(want, lim.Max)}); err == nil {
		return want, nil
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("setrlimit: %w", err)
	}
	return lim.Cur, nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// ProcCPU returns the user+system CPU time process pid has used, from
// /proc/<pid>/stat.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("cpu of %d: %w", pid, err)
	}
	return parseStatCPU(b)
}

func parseStatCPU(stat []byte) (time.Duration, error) {
	// The command name (field 2) may hold spaces; fields after its closing
	// parenthesis are plain: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unexpected /proc stat times")
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter measures the CPU the local gateways, the other local services and
// the load generator use during a phase: on a two-core machine shared by
// all of them, where the cores go explains most figures.
type cpuMeter struct {
	e    *Env
	t0   time.Time
	gw   []time.Duration // by gateway; -1: unknown
	svc  map[string]time.Duration
	pg   map[int]time.Duration // every local postgres process, by pid
	self time.Duration
	// workers lists load generator processes started after the meter (idle
	// workers): all their CPU counts as the load generator's.
	workers func() []int
}

func (e *Env) startCPU() *cpuMeter {
	m := &cpuMeter{e: e, t0: time.Now(), self: selfCPU(), svc: map[string]time.Duration{}}
	for _, pid := range e.GatewayPIDs {
		d, err := ProcCPU(pid)
		if err != nil || pid <= 0 {
			d = -1
		}
		m.gw = append(m.gw, d)
	}
	for name, pid := range e.ServicePIDs {
		if d, err := ProcCPU(pid); err == nil {
			m.svc[name] = d
		}
	}
	m.pg = cpuByName("postgres")
	return m
}

// cpuByName returns the CPU time of every process whose command name is
// name (PostgreSQL runs one backend process per connection).
func cpuByName(name string) map[int]time.Duration {
	out := map[int]time.Duration{}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + d.Name() + "/comm")
		if err != nil || strings.TrimSpace(string(comm)) != name {
			continue
		}
		if c, err := ProcCPU(pid); err == nil {
			out[pid] = c
		}
	}
	return out
}

// cpuUse is what a phase cost, in CPU time; gateways is -1 when no local
// gateway pid is known.
type cpuUse struct {
	wall, gateways, self time.Duration
	services             map[string]time.Duration
}

func (m *cpuMeter) stop() cpuUse {
	u := cpuUse{wall: time.Since(m.t0), self: selfCPU() - m.self, gateways: -1, services: map[string]time.Duration{}}
	if m.workers != nil {
		for _, pid := range m.workers() {
			if d, err := ProcCPU(pid); err == nil {
				u.self += d
			}
		}
	}
	for i, pid := range m.e.GatewayPIDs {
		if m.gw[i] < 0 {
			continue
		}
		if d, err := ProcCPU(pid); err == nil {
			u.gateways = max(u.gateways, 0) + d - m.gw[i]
		}
	}
	for name, d0 := range m.svc {
		if d, err := ProcCPU(m.e.ServicePIDs[name]); err == nil {
			u.services[name] = d - d0
		}
	}
	// PostgreSQL: backends started during the phase count from zero; ones
	// that ended during it are missed. The server may serve others too.
	if len(m.pg) > 0 {
		var pg time.Duration
		for pid, d := range cpuByName("postgres") {
			pg += d - m.pg[pid]
		}
		u.services["postgres"] = pg
	}
	return u
}

// addCPU reports the cores each local process kept busy on average and
// returns the gateways' CPU time (-1 when unknown).
func (m *cpuMeter) addCPU(r *Report, prefix string) (gateways time.Duration) {
	u := m.stop()
	cores := func(d time.Duration) float64 { return d.Seconds() / u.wall.Seconds() }
	if u.gateways >= 0 {
		r.Add(prefix+"gateway_cpu_cores", cores(u.gateways), "cores")
	}
	for _, name := range []string{"orderapi", "redis", "postgres"} {
		if d, ok := u.services[name]; ok {
			r.Add(prefix+name+"_cpu_cores", cores(d), "cores")
		}
	}
	r.Add(prefix+"loadgen_cpu_cores", cores(u.self), "cores")
	return u.gateways
}
