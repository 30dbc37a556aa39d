package redismetrics_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"orderpush/pkg/redismetrics"
	"orderpush/pkg/redistest"
)

func client(t *testing.T, url string) *redis.Client {
	t.Helper()
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	o.MaxRetries = -1
	rdb := redis.NewClient(o)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// On a real Redis: a command and a pipeline are one round trip each, a
// missing key is an answer, a command to a stopped Redis is an error.
func TestRoundTrips(t *testing.T) {
	rs := redistest.Start(t)
	rdb := client(t, rs.URL())
	reg := prometheus.NewRegistry()
	rdb.AddHook(redismetrics.NewHook(reg, "test"))
	// go-redis may dial a connection at any moment, and a new connection
	// makes its own round trips (HELLO, CLIENT SETINFO): rec sees every
	// round trip the client makes, to compare the metrics with.
	rec := &recorder{}
	rdb.AddHook(rec)

	ctx := t.Context()
	key := redistest.Unique("k")
	if err := rdb.Ping(ctx).Err(); err != nil { // connected: its set-up round trips are done
		t.Fatal(err)
	}
	count := func(kind string) float64 { return value(t, reg, "test_redis_roundtrip_seconds", kind) }
	errs := func(kind string) float64 { return value(t, reg, "test_redis_errors_total", kind) }
	cmds0, pipes0, errs0 := count(redismetrics.KindCommand), count(redismetrics.KindPipeline), errs(redismetrics.KindCommand)
	rec.reset()
	if err := rdb.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Get(ctx, key+"-missing").Err(); err != redis.Nil {
		t.Fatalf("get missing: %v", err)
	}
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, key+"-n")
		p.Incr(ctx, key+"-n")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cmds, pipes := rec.get()
	if !strings.Contains(strings.Join(cmds, " "), "set get") || !slices.Contains(pipes, "incr incr") {
		t.Fatalf("recorded commands %v, pipelines %v: want SET, GET and one pipeline of two INCR", cmds, pipes)
	}
	if got := count(redismetrics.KindCommand) - cmds0; got != float64(len(cmds)) {
		t.Errorf("command round trips %v, want %d (%v)", got, len(cmds), cmds)
	}
	if got := count(redismetrics.KindPipeline) - pipes0; got != float64(len(pipes)) {
		t.Errorf("pipeline round trips %v, want %d (%v)", got, len(pipes), pipes)
	}
	if errs(redismetrics.KindCommand) != errs0 {
		t.Errorf("a missing key counted as an error")
	}

	rs.Stop()
	if err := rdb.Get(ctx, key).Err(); err == nil {
		t.Fatal("GET answered with Redis stopped")
	}
	if errs(redismetrics.KindCommand) != errs0+1 {
		t.Errorf("command errors %v, want %v: the failed GET", errs(redismetrics.KindCommand), errs0+1)
	}
}

// recorder records the names of the commands and pipelines a client runs.
type recorder struct {
	mu    sync.Mutex
	cmds  []string
	pipes []string
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cmds, r.pipes = nil, nil
}

func (r *recorder) get() ([]string, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.cmds), slices.Clone(r.pipes)
}

func (r *recorder) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *recorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.mu.Lock()
		r.cmds = append(r.cmds, cmd.Name())
		r.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (r *recorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = c.Name()
		}
		r.mu.Lock()
		r.pipes = append(r.pipes, strings.Join(names, " "))
		r.mu.Unlock()
		return next(ctx, cmds)
	}
}

// redis_up follows Redis: 1, 0 while it is stopped, 1 again after.
func TestUp(t *testing.T) {
	rs := redistest.Start(t)
	rdb := client(t, rs.URL())
	reg := prometheus.NewRegistry()
	redismetrics.Instrument(rdb, reg, "test")
	up := func() float64 { return value(t, reg, "test_redis_up", "") }
	if v := up(); v != 1 {
		t.Errorf("redis_up %v with Redis running", v)
	}
	rs.Stop()
	if v := up(); v != 0 {
		t.Errorf("redis_up %v with Redis stopped", v)
	}
	rs.Start()
	// The pool's broken connection may fail the first PING after the
	// restart (no retries here); a later one reconnects.
	v := 0.0
	for deadline := time.Now().Add(5 * time.Second); v != 1 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		v = up()
	}
	if v != 1 {
		t.Errorf("redis_up %v after Redis restarted", v)
	}
}

// value reads one series from reg: a gauge's or counter's value, a
// histogram's sample count; kind is its label value ("" for none).
func value(t *testing.T, reg *prometheus.Registry, name, kind string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if kind != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != kind) {
				continue
			}
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no %s{kind=%q}", name, kind)
	return 0
}
