package wstest

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Follower is a dashboard that stays connected: after any close it
// reconnects to the next of its URLs (round robin) with since = the last
// seq it saw, and it checks across reconnects that it sees every seq
// exactly once and in order.
type Follower struct {
	base  []string
	token string

	mu       sync.Mutex
	last     uint64   // last seq seen
	seqs     []uint64 // every seq seen, across connections
	problems []string
	resyncs  int
	conns    int
	closes   map[int]int // close codes seen
	nodes    []string    // hello.node per connection
	cur      *Conn
	stopped  bool
	changed  chan struct{}

	stop chan struct{}
	done chan struct{}
}

// Follow connects to bases[0] first (without since) and keeps following.
func Follow(bases []string, tok string) *Follower {
	f := &Follower{base: bases, token: tok, closes: map[int]int{}, changed: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	go f.run()
	return f
}

func (f *Follower) run() {
	defer close(f.done)
	since := int64(-1)
	for i := 0; ; i++ {
		select {
		case <-f.stop:
			return
		default:
		}
		u := URL(f.base[i%len(f.base)], f.token, since)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := Dial(ctx, u, nil)
		cancel()
		if err != nil {
			select {
			case <-f.stop:
				return
			case <-time.After(50 * time.Millisecond): // retry pacing, bounded by stop
			}
			continue
		}
		f.mu.Lock()
		f.cur, f.conns = c, f.conns+1
		stopped := f.stopped
		f.mu.Unlock()
		if stopped {
			c.Close()
			return
		}
		f.consume(c, since)
		<-c.Done()
		f.mu.Lock()
		f.closes[int(c.CloseStatus())]++
		f.cur = nil
		since = int64(f.last)
		f.mu.Unlock()
	}
}

// consume checks frames as they come until the connection ends.
func (f *Follower) consume(c *Conn, since int64) {
	seen := 0
	first := true
	for {
		fs := c.Frames()
		for _, fr := range fs[seen:] {
			f.take(fr, first, since)
			first = false
		}
		seen = len(fs)
		select {
		case <-c.notify:
		case <-c.done:
			fs := c.Frames()
			for _, fr := range fs[seen:] {
				f.take(fr, first, since)
				first = false
			}
			return
		}
	}
}

func (f *Follower) take(fr Frame, first bool, since int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.signal()
	if first {
		if fr.Event != "hello" {
			f.problems = append(f.problems, fmt.Sprintf("first frame %q", fr.Event))
			return
		}
		h := fr.Hello()
		f.nodes = append(f.nodes, h.Node)
		if since < 0 {
			f.last = h.Seq
		}
		return
	}
	switch {
	case fr.Event == "resync":
		f.resyncs++
		f.last = fr.Hello().Seq
	case fr.Seq == 0:
	case fr.Seq != f.last+1:
		f.problems = append(f.problems, fmt.Sprintf("seq %d after %d", fr.Seq, f.last))
		f.last = max(f.last, fr.Seq)
	default:
		f.last = fr.Seq
		f.seqs = append(f.seqs, fr.Seq)
	}
}

func (f *Follower) signal() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// WaitSeq waits until the follower has seen seq n.
func (f *Follower) WaitSeq(timeout time.Duration, n uint64) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		last := f.last
		f.mu.Unlock()
		if last >= n {
			return nil
		}
		select {
		case <-f.changed:
		case <-deadline.C:
			return fmt.Errorf("want seq %d: %s", n, f.Summary())
		}
	}
}

// Connected waits until the follower has had n connections with hello.
func (f *Follower) Connected(timeout time.Duration, n int) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		k := len(f.nodes)
		f.mu.Unlock()
		if k >= n {
			return nil
		}
		time.Sleep(5 * time.Millisecond) // polling, bounded by the deadline
	}
	return fmt.Errorf("follower did not get %d hellos: %s", n, f.Summary())
}

// Nodes lists hello.node of each connection so far.
func (f *Follower) Nodes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.nodes...)
}

// Stop closes the socket and stops reconnecting.
func (f *Follower) Stop() {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		<-f.done
		return
	}
	f.stopped = true
	close(f.stop)
	c := f.cur
	f.mu.Unlock()
	if c != nil {
		c.Close()
	}
	<-f.done
}

// Check reports any violation: a seq out of order, a resync, or seqs not
// exactly from..to once each.
func (f *Follower) Check(from, to uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.problems) > 0 {
		return fmt.Errorf("stream problems: %v", f.problems)
	}
	if f.resyncs > 0 {
		return fmt.Errorf("%d resyncs", f.resyncs)
	}
	if uint64(len(f.seqs)) != to-from+1 {
		return fmt.Errorf("got %d events, want %d (%d..%d)", len(f.seqs), to-from+1, from, to)
	}
	for i, s := range f.seqs {
		if s != from+uint64(i) {
			return fmt.Errorf("event %d is seq %d, want %d", i, s, from+uint64(i))
		}
	}
	return nil
}

// Summary describes the follower for failure messages.
func (f *Follower) Summary() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprintf("last=%d events=%d conns=%d resyncs=%d closes=%v problems=%v",
		f.last, len(f.seqs), f.conns, f.resyncs, f.closes, f.problems)
}

// Conns is the number of connections made.
func (f *Follower) Conns() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}
