package loadgen

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// idleHolder opens and holds the idle scenario's sockets: in this process,
// or over several worker processes when more sockets are wanted than one
// process may have open files (this machine's hard RLIMIT_NOFILE is 20000 and
// cannot be raised without CAP_SYS_RESOURCE).
type idleHolder interface {
	open(ctx context.Context, n, parallel int) (OpenResult, error)
	seen(ctx context.Context) (int64, error) // stream frames received so far, all sockets
	dropped() map[string]int                 // why sockets closed early
	pids() []int                             // worker processes, if any
	close()
}

// fleetHolder holds the sockets in this process.
type fleetHolder struct{ fl *Fleet }

func (h *fleetHolder) open(ctx context.Context, n, parallel int) (OpenResult, error) {
	return h.fl.Open(ctx, n, 0, parallel), nil
}
func (h *fleetHolder) seen(context.Context) (int64, error) { return h.fl.Seen(), nil }
func (h *fleetHolder) dropped() map[string]int {
	if h.fl.Dropped() == 0 {
		return nil
	}
	return Drops(h.fl.Socks())
}
func (h *fleetHolder) close()      { h.fl.Close() }
func (h *fleetHolder) pids() []int { return nil }

// fileLimit is this process's soft RLIMIT_NOFILE.
func fileLimit() uint64 {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		return 0
	}
	return lim.Cur
}

// WorkerSpec is what an idle worker process is told on its command line;
// the secret comes through JWT_SECRET in its environment.
type WorkerSpec struct {
	Gateways   []string
	RunID      string
	Merchants  int
	First      int // global index of its first socket: socket k is merchant (First+k) % Merchants
	Sockets    int
	Parallel   int
	SourceIPs  int
	SourceBase int
	Transport  string
}

// Args renders the spec as idle-worker flags.
func (w WorkerSpec) Args() []string {
	return []string{"-gateways", strings.Join(w.Gateways, ","), "-run", w.RunID,
		"-merchants", strconv.Itoa(w.Merchants), "-first", strconv.Itoa(w.First), "-sockets", strconv.Itoa(w.Sockets),
		"-parallel", strconv.Itoa(w.Parallel), "-srcips", strconv.Itoa(w.SourceIPs), "-srcbase", strconv.Itoa(w.SourceBase),
		"-transport", cmp.Or(w.Transport, TransportWS)}
}

// workerOpened is the worker's first line on stdout.
type workerOpened struct {
	Opened     int            `json:"opened"`
	Failed     int            `json:"failed"`
	Start      int64          `json:"start"` // Unix ns
	End        int64          `json:"end"`
	Errors     map[string]int `json:"errors"`
	PerGateway []int          `json:"perGateway"`
	Connects   []int64        `json:"connects"` // ns
}

// RunIdleWorker is the body of an idle worker process: it opens its share of
// sockets, prints a workerOpened line, then answers "seen" and "drops" lines
// on in until "quit" or EOF, and closes its sockets.
func RunIdleWorker(ctx context.Context, spec WorkerSpec, secret []byte, in io.Reader, out io.Writer) error {
	e, err := NewEnv(EnvConfig{Gateways: spec.Gateways, Secret: secret, SourceIPs: spec.SourceIPs})
	if err != nil {
		return err
	}
	defer e.Close()
	e.RunID, e.SourceBase = spec.RunID, spec.SourceBase
	if e.SourceBase+e.SourceIPs > 250 {
		return errors.New("idle worker: source addresses beyond 127.0.0.251")
	}
	merchants := make([]string, spec.Merchants)
	for i := range merchants {
		merchants[i] = e.MerchantID("i", i)
	}
	fl, err := NewFleet(e, merchants, FleetOptions{Transport: spec.Transport})
	if err != nil {
		return err
	}
	defer fl.Close()
	start := time.Now()
	res := fl.Open(ctx, spec.Sockets, spec.First, spec.Parallel)
	end := start.Add(res.Elapsed)
	enc := json.NewEncoder(out)
	if err := enc.Encode(workerOpened{Opened: res.Opened, Failed: res.Failed, Start: start.UnixNano(), End: end.UnixNano(),
		Errors: res.Errors, PerGateway: res.PerGateway, Connects: res.Connects.ns}); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		switch sc.Text() {
		case "seen":
			err = enc.Encode(map[string]int64{"seen": fl.Seen()})
		case "drops":
			err = enc.Encode(map[string]map[string]int{"drops": Drops(fl.Socks())})
		case "quit":
			return nil
		default:
			err = fmt.Errorf("idle worker: unknown command %q", sc.Text())
		}
		if err != nil {
			return err
		}
	}
	return sc.Err()
}

// procHolder spreads the sockets over worker processes.
type procHolder struct {
	e   *Env
	cfg IdleConfig

	workers []*worker
}

type worker struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
	mu  sync.Mutex
}

func (w *worker) ask(cmd string, v any) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := io.WriteString(w.in, cmd+"\n"); err != nil {
		return err
	}
	if !w.out.Scan() {
		if err := w.out.Err(); err != nil {
			return err
		}
		return io.ErrUnexpectedEOF
	}
	return json.Unmarshal(w.out.Bytes(), v)
}

func (h *procHolder) open(ctx context.Context, n, parallel int) (OpenResult, error) {
	cmdline := h.cfg.WorkerCmd
	if len(cmdline) == 0 {
		return OpenResult{}, errors.New("idle: -procs needs the load generator's worker command")
	}
	procs := h.cfg.Procs
	gws := gatewayStrings(h.e.Gateways)
	first := 0
	for w := range procs {
		share := n / procs
		if w < n%procs {
			share++
		}
		spec := WorkerSpec{Gateways: gws, RunID: h.e.RunID, Merchants: h.cfg.Merchants, First: first, Sockets: share,
			Parallel: max(8, parallel/procs), SourceIPs: max(1, h.e.SourceIPs), SourceBase: w * max(1, h.e.SourceIPs),
			Transport: h.cfg.Transport}
		first += share
		cmd := exec.CommandContext(ctx, cmdline[0], append(append(cmdline[1:len(cmdline):len(cmdline)], "idle-worker"), spec.Args()...)...)
		cmd.Env = append(os.Environ(), "JWT_SECRET="+string(h.e.Secret))
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return OpenResult{}, err
		}
		outp, err := cmd.StdoutPipe()
		if err != nil {
			return OpenResult{}, err
		}
		if err := cmd.Start(); err != nil {
			return OpenResult{}, fmt.Errorf("start idle worker: %w", err)
		}
		sc := bufio.NewScanner(outp)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		h.workers = append(h.workers, &worker{cmd: cmd, in: in, out: sc})
	}
	res := OpenResult{Errors: map[string]int{}, PerGateway: make([]int, len(gws))}
	var start, end int64
	for i, w := range h.workers {
		if !w.out.Scan() {
			return res, fmt.Errorf("idle worker %d ended before reporting: %v", i, w.out.Err())
		}
		var o workerOpened
		if err := json.Unmarshal(w.out.Bytes(), &o); err != nil {
			return res, fmt.Errorf("idle worker %d: %w", i, err)
		}
		res.Opened += o.Opened
		res.Failed += o.Failed
		for k, v := range o.Errors {
			res.Errors[k] += v
		}
		for g, v := range o.PerGateway {
			res.PerGateway[g] += v
		}
		res.Connects.ns = append(res.Connects.ns, o.Connects...)
		if start == 0 || o.Start < start {
			start = o.Start
		}
		end = max(end, o.End)
	}
	res.Elapsed = time.Duration(end - start)
	return res, nil
}

func (h *procHolder) seen(context.Context) (int64, error) {
	var n int64
	for i, w := range h.workers {
		var v struct{ Seen int64 }
		if err := w.ask("seen", &v); err != nil {
			return n, fmt.Errorf("idle worker %d: %w", i, err)
		}
		n += v.Seen
	}
	return n, nil
}

func (h *procHolder) dropped() map[string]int {
	out := map[string]int{}
	for _, w := range h.workers {
		var v struct{ Drops map[string]int }
		if w.ask("drops", &v) == nil {
			for k, n := range v.Drops {
				out[k] += n
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func (h *procHolder) pids() []int {
	var out []int
	for _, w := range h.workers {
		out = append(out, w.cmd.Process.Pid)
	}
	return out
}

func (h *procHolder) close() {
	for _, w := range h.workers {
		_, _ = io.WriteString(w.in, "quit\n")
		_ = w.in.Close()
	}
	for _, w := range h.workers {
		done := make(chan struct{})
		go func() { _ = w.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = w.cmd.Process.Kill()
			<-done
		}
	}
	h.workers = nil
}

// gatewayStrings renders URLs back to strings.
func gatewayStrings(us []*url.URL) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.String()
	}
	return out
}
