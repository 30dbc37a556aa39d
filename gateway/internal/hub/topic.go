package hub

import (
	"sync"
	"time"
)

// topic is one merchant's local sockets and its sequencer.
type topic struct {
	merchant string
	channel  string
	ready    chan struct{} // closed once init finished (well or not)
	initErr  error         // written before ready is closed

	// Guarded by Hub.mu.
	refs      int
	removed   bool
	readyFlag bool

	mu sync.Mutex
	// Guarded by mu.
	inited   bool
	closed   bool
	head     uint64 // last seq delivered, in order, to the topic's sockets
	orderSum int64  // orderSum as of head
	pending  map[uint64]frame
	subs     []*Subscription
	timer    *time.Timer // gap wait, while early frames are pending
	filling  bool        // a fill goroutine runs
	refill   bool        // another fill was asked for meanwhile
}

// offer takes one frame into the sequencer. t.mu must be held.
func (h *Hub) offer(t *topic, f frame) {
	switch {
	case f.seq == 0:
		if t.inited {
			h.fanout(t, f) // outside the stream: delivered to whoever is here now
		}
	case !t.inited:
		t.pending[f.seq] = f // sorted out once the state is known
	case f.seq <= t.head:
		h.m.DuplicateFrames.Inc()
	case f.seq == t.head+1:
		h.deliver(t, f)
		h.drain(t)
	default:
		if _, dup := t.pending[f.seq]; dup {
			h.m.DuplicateFrames.Inc()
			return
		}
		t.pending[f.seq] = f
		if len(t.pending) > maxPending {
			h.stopTimer(t)
			h.startFillLocked(t)
			return
		}
		h.scheduleFill(t)
	}
}

// deliver advances head to f and fans it out. t.mu must be held.
func (h *Hub) deliver(t *topic, f frame) {
	t.head = f.seq
	if f.hasSum {
		t.orderSum = f.orderSum
	}
	h.fanout(t, f)
}

// drain delivers pending frames that have become next in line, and stops
// the gap timer when nothing is left waiting. t.mu must be held.
func (h *Hub) drain(t *topic) {
	for len(t.pending) > 0 {
		f, ok := t.pending[t.head+1]
		if !ok {
			break
		}
		delete(t.pending, f.seq)
		h.deliver(t, f)
	}
	if len(t.pending) == 0 {
		h.stopTimer(t)
	}
}

// afterJump is drain after head moved by more than one (state read,
// resync): pending frames at or below head are dropped first. If a gap
// remains, a fill is scheduled. t.mu must be held.
func (h *Hub) afterJump(t *topic) {
	for seq := range t.pending {
		if seq <= t.head {
			delete(t.pending, seq)
		}
	}
	h.drain(t)
	if len(t.pending) > 0 {
		h.scheduleFill(t)
	}
}

// minPending is the smallest pending seq, or 0. t.mu must be held.
func (t *topic) minPending() uint64 {
	var m uint64
	for seq := range t.pending {
		if m == 0 || seq < m {
			m = seq
		}
	}
	return m
}

// fanout queues f on every socket of the topic. Each socket is sent a seq
// only once: its cursor skips what its hello or replay already covered.
// t.mu must be held.
func (h *Hub) fanout(t *topic, f frame) {
	e := f.entry()
	for _, s := range t.subs {
		if s.dead {
			continue
		}
		if s.replaying {
			s.buffer(bufEntry{frame: f})
			continue
		}
		if f.seq != 0 {
			if f.seq <= s.last {
				continue
			}
			s.last = f.seq
		}
		if !s.m.TrySend(e) {
			s.overflow()
		}
	}
}

// scheduleFill arms the gap timer unless it runs or a fill is under way.
// t.mu must be held.
func (h *Hub) scheduleFill(t *topic) {
	if t.timer != nil || t.filling || t.closed {
		return
	}
	h.wg.Add(1)
	t.timer = time.AfterFunc(h.cfg.GapWait, func() {
		defer h.wg.Done()
		t.mu.Lock()
		t.timer = nil
		h.startFillLocked(t)
		t.mu.Unlock()
	})
}

// stopTimer disarms the gap timer. t.mu must be held.
func (h *Hub) stopTimer(t *topic) {
	if t.timer != nil && t.timer.Stop() {
		h.wg.Done() // the callback will never run
	}
	t.timer = nil
}
