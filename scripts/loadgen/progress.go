package loadgen

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Progress draws one updating status line for a long phase: on a terminal it
// redraws in place, elsewhere (CI logs) it prints a line every few seconds.
// A nil *Progress does nothing.
type Progress struct {
	w     io.Writer
	tty   bool
	every time.Duration
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// StartProgress calls status periodically and shows its result prefixed by
// the phase name and elapsed time, until Stop. w nil means silent.
func StartProgress(w io.Writer, phase string, status func() string) *Progress {
	if w == nil {
		return nil
	}
	p := &Progress{w: w, tty: isTerminal(w), every: 5 * time.Second, stop: make(chan struct{}), done: make(chan struct{})}
	if p.tty {
		p.every = 250 * time.Millisecond
	}
	start := time.Now()
	go func() {
		defer close(p.done)
		t := time.NewTicker(p.every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				line := fmt.Sprintf("%s %5.1fs %s", phase, time.Since(start).Seconds(), status())
				if p.tty {
					fmt.Fprintf(p.w, "\r%s\033[K\n", line)
				} else {
					fmt.Fprintln(p.w, line)
				}
				return
			case <-t.C:
				line := fmt.Sprintf("%s %5.1fs %s", phase, time.Since(start).Seconds(), status())
				if p.tty {
					fmt.Fprintf(p.w, "\r%s\033[K", line)
				} else {
					fmt.Fprintln(p.w, line)
				}
			}
		}
	}()
	return p
}

// Stop prints the final state and ends the line.
func (p *Progress) Stop() {
	if p == nil {
		return
	}
	p.once.Do(func() { close(p.stop) })
	<-p.done
}

// Bar renders done/total as a short bar with a count.
func Bar(done, total int64) string {
	const width = 20
	if total <= 0 {
		return fmt.Sprintf("%d", done)
	}
	n := int(min(width, done*width/total))
	return fmt.Sprintf("[%s%s] %d/%d", strings.Repeat("#", n), strings.Repeat(".", width-n), done, total)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
