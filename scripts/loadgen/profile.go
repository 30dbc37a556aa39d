package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Profiler fetches pprof profiles from the gateways and the order API
// (their PPROF_ADDR endpoints) during measured phases and saves them under
// Dir: <phase>.cpu.gw0.pprof, <phase>.cpu.orderapi.pprof, ...
type Profiler struct {
	Dir      string
	URLs     []string // base http URLs of each gateway's pprof server, aligned with Env.Gateways; "" skips one
	OrderAPI string   // base http URL of the order API's pprof server, "" for none
}

// CPU starts fetching a CPU profile of every gateway and of the order API
// for d and returns a function that waits for them and returns the files
// written. A nil Profiler, or one without URLs, does nothing.
func (p *Profiler) CPU(ctx context.Context, name string, d time.Duration) (wait func() []string) {
	return p.fetch(ctx, name+".cpu", "/debug/pprof/profile?seconds="+strconv.Itoa(max(1, int(d.Seconds()))), d+30*time.Second)
}

// Heap fetches a heap profile (after a GC) of every gateway and of the
// order API now.
func (p *Profiler) Heap(ctx context.Context, name string) []string {
	return p.fetch(ctx, name+".heap", "/debug/pprof/heap?gc=1", 30*time.Second)()
}

func (p *Profiler) fetch(ctx context.Context, name, path string, timeout time.Duration) func() []string {
	if p == nil || p.Dir == "" {
		return func() []string { return nil }
	}
	targets := map[string]string{}
	for i, base := range p.URLs {
		if base != "" {
			targets[fmt.Sprintf("gw%d", i)] = base
		}
	}
	if p.OrderAPI != "" {
		targets["orderapi"] = p.OrderAPI
	}
	var mu sync.Mutex
	var files []string
	var wg sync.WaitGroup
	for who, base := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := filepath.Join(p.Dir, fmt.Sprintf("%s.%s.pprof", name, who))
			if err := download(ctx, strings.TrimSuffix(base, "/")+path, out, timeout); err != nil {
				fmt.Fprintf(os.Stderr, "profile %s: %v\n", out, err)
				return
			}
			mu.Lock()
			files = append(files, out)
			mu.Unlock()
		}()
	}
	return func() []string {
		wg.Wait()
		return files
	}
}

func download(ctx context.Context, url, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
