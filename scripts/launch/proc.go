package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Spec describes one process to start.
type Spec struct {
	Name string   // for messages, e.g. "gateway-a"
	Path string   // the executable
	Args []string // arguments after the program name
	// Env entries ("KEY=value") are added to the parent's environment; a key
	// given here wins over the inherited one.
	Env []string
	// LogFile receives stdout and stderr (created or truncated). Empty:
	// Output, if set, else the output is discarded.
	LogFile string
	Output  io.Writer
	Dir     string // working directory; empty: the parent's
}

// StopTimeout is how long a process gets after SIGTERM before SIGKILL when
// its context ends or a test's cleanup stops it: PROTOCOL.md gives a replica
// 10 s to drain, plus a margin.
const StopTimeout = 12 * time.Second

// ErrStopTimeout is wrapped by Stop when the process ignored SIGTERM and was
// killed.
var ErrStopTimeout = errors.New("did not exit after SIGTERM")

// Proc is a started process.
type Proc struct {
	Name    string
	LogFile string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been waited for

	// Set before done is closed, read only after.
	exitCode int
	waitErr  error

	stopOnce sync.Once
	stopErr  error // set inside stopOnce
}

// Start starts the process described by spec. When ctx ends the process gets
// SIGTERM, and SIGKILL if it is still running StopTimeout later; on Linux it
// is killed when the calling process dies.
func Start(ctx context.Context, spec Spec) (*Proc, error) {
	if spec.Name == "" {
		spec.Name = spec.Path
	}
	cmd := exec.CommandContext(ctx, spec.Path, spec.Args...)
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Dir = spec.Dir
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = StopTimeout
	var logf *os.File
	switch {
	case spec.LogFile != "":
		f, err := os.Create(spec.LogFile)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", spec.Name, err)
		}
		logf = f
		cmd.Stdout, cmd.Stderr = f, f
	case spec.Output != nil:
		cmd.Stdout, cmd.Stderr = spec.Output, spec.Output
	}
	if err := cmd.Start(); err != nil {
		if logf != nil {
			logf.Close()
		}
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p := &Proc{Name: spec.Name, LogFile: spec.LogFile, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		if logf != nil {
			logf.Close()
		}
		p.exitCode = cmd.ProcessState.ExitCode()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.Exited() {
			err = nil // a plain exit status is reported as the code
		}
		p.waitErr = err
		close(p.done)
	}()
	return p, nil
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit and returns its exit status. err is nil
// for any normal exit (look at exitCode); it is set, with exitCode -1, when
// the process was ended by a signal or could not be waited for.
func (p *Proc) Wait() (exitCode int, err error) {
	<-p.done
	return p.exitCode, p.waitErr
}

// Signal sends sig to the process; it does nothing once the process has
// exited.
func (p *Proc) Signal(sig os.Signal) {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
}

// Kill ends the process with SIGKILL (an abrupt crash, nothing cleaned up)
// and waits for it.
func (p *Proc) Kill() {
	p.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM, waits up to timeout for the exit, then kills. It
// returns what Wait returns; when it had to kill, err wraps ErrStopTimeout.
// Calling it again returns the same result.
func (p *Proc) Stop(timeout time.Duration) (exitCode int, err error) {
	p.stopOnce.Do(func() {
		p.Signal(syscall.SIGTERM)
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
			p.Kill()
			p.stopErr = fmt.Errorf("%s %w within %s", p.Name, ErrStopTimeout, timeout)
		}
	})
	code, err := p.Wait()
	if p.stopErr != nil {
		return code, p.stopErr
	}
	return code, err
}

// WaitHTTP polls url until it answers 200, the process exits, or ctx ends.
// The error of an early exit carries the end of the log file.
func (p *Proc) WaitHTTP(ctx context.Context, url string) error {
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("wait %s: %w", p.Name, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			code, werr := p.Wait()
			return fmt.Errorf("%s exited (status %d, %v) before %s answered 200\n%s", p.Name, code, werr, url, p.LogTail(4096))
		case <-ctx.Done():
			return fmt.Errorf("%s: %s not ready (%s): %w\n%s", p.Name, url, last, ctx.Err(), p.LogTail(4096))
		case <-tick.C:
		}
	}
}

// WaitReady is WaitHTTP on baseURL + "/readyz".
func (p *Proc) WaitReady(ctx context.Context, baseURL string) error {
	return p.WaitHTTP(ctx, strings.TrimSuffix(baseURL, "/")+"/readyz")
}

// LogTail returns up to the last n bytes of the log file, or "" when there
// is none.
func (p *Proc) LogTail(n int64) string {
	if p.LogFile == "" {
		return ""
	}
	f, err := os.Open(p.LogFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
