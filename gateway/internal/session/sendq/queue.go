// Package sendq is the bounded send queue of one socket: the fan-out side
// pushes frames without ever blocking; at most one drainer at a time takes
// them in batches and writes them.
//
// There is no writer goroutine per socket. The queue knows whether a
// drainer is running: the push that makes an idle queue non-empty calls the
// wake function (which starts one), and the drainer's Take that finds the
// queue empty marks it idle again, atomically with the check, so a frame
// pushed at that moment starts a new drainer instead of being stranded.
// A new queue counts as drained-for: its owner starts the first drainer
// itself once it has somewhere to write (the socket, after the upgrade).
//
// A Queue is safe for concurrent use by any number of pushers and one
// drainer at a time.
package sendq

import (
	"context"
	"errors"
	"sync"

	"orderpush/pkg/wire"
)

// Entry is one frame to write. Data is shared between sockets and must not
// be modified. TS is the publish time in Unix milliseconds used for the
// delivery lag metric, or 0 when the frame is not live (replay, hello).
// Seq is the merchant seq the frame brings the socket to (a sequenced
// frame's own, the seq of hello and resync), or 0: what bounds the
// socket's acks. Head is Data decoded, when whoever built or received the
// frame has it (shared and read-only like Data): transports that re-encode
// frames (SSE, socket.io) read it instead of decoding Data once per socket.
// A nil Head means they decode Data.
type Entry struct {
	Data []byte
	TS   int64
	Seq  uint64
	Head *wire.Frame
}

// Build is the entry of a frame the gateway makes itself, with its Head:
// event and, when v is not nil, v as data; no seq, no ts. v must marshal
// (the wire package's types); anything else is a programming error.
func Build(event string, v any) Entry {
	h := &wire.Frame{Event: event}
	if v != nil {
		h.Data = mustMarshal(v)
	}
	// The data's bytes go into the frame verbatim, so Head.Data and the
	// frame's data member are the same.
	return Entry{Data: mustMarshal(h), Head: h}
}

func mustMarshal(v any) []byte {
	b, err := wire.Marshal(v)
	if err != nil {
		panic("sendq: " + err.Error())
	}
	return b
}

// ErrClosed is returned by Push after Close.
var ErrClosed = errors.New("send queue closed")

// Queue is a bounded FIFO of entries.
type Queue struct {
	limit int
	wake  func() // starts a drainer; nil: the owner takes on its own schedule

	mu     sync.Mutex
	buf    []Entry       // guarded by mu; nil while idle, so an idle socket holds no buffer
	closed bool          // guarded by mu
	active bool          // guarded by mu: a drainer runs or is about to
	kicked bool          // guarded by mu: Wake while active; the next empty Take reports more once
	space  chan struct{} // guarded by mu: made by the first Push that waits; signalled by Take and Close
}

// New returns a queue that holds at most limit entries (limit >= 1). wake,
// when not nil, is called (outside the queue's lock) whenever a drainer must
// be started; the queue starts out active, so the first drainer is the
// owner's to start.
func New(limit int, wake func()) *Queue {
	return &Queue{limit: max(limit, 1), wake: wake, active: wake != nil}
}

// Limit is the capacity.
func (q *Queue) Limit() int { return q.limit }

// TryPush appends e unless the queue is full or closed; it never blocks.
func (q *Queue) TryPush(e Entry) bool {
	q.mu.Lock()
	if q.closed || len(q.buf) >= q.limit {
		q.mu.Unlock()
		return false
	}
	q.buf = append(q.buf, e)
	start := q.startLocked()
	q.mu.Unlock()
	if start {
		q.wake()
	}
	return true
}

// Push appends e, waiting for room. It is for the socket's own catch-up
// (replay), which may be longer than the queue but must not be dropped.
func (q *Queue) Push(ctx context.Context, e Entry) error {
	for {
		q.mu.Lock()
		switch {
		case q.closed:
			q.mu.Unlock()
			return ErrClosed
		case len(q.buf) < q.limit:
			q.buf = append(q.buf, e)
			start := q.startLocked()
			q.mu.Unlock()
			if start {
				q.wake()
			}
			return nil
		}
		if q.space == nil {
			q.space = make(chan struct{}, 1)
		}
		space := q.space
		q.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// startLocked marks the queue active and reports whether the caller must
// call wake.
func (q *Queue) startLocked() bool {
	if q.wake == nil || q.active {
		return false
	}
	q.active = true
	return true
}

// Wake makes the drainer look again even if nothing is queued (the socket
// uses it to get its close frame written): it starts one when none runs,
// else the running one's next empty Take reports more. False after Close.
func (q *Queue) Wake() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	if q.active {
		q.kicked = true
		q.mu.Unlock()
		return
	}
	start := q.startLocked()
	q.mu.Unlock()
	if start {
		q.wake()
	}
}

// Take returns every queued entry and empties the queue. spare, the
// previous batch, becomes the queue's buffer (so the two slices swap and a
// steady stream allocates nothing); Take clears it first so written frames
// can be collected. more is false when the drainer must stop: the queue was
// empty (it is now idle, and the next push wakes a new drainer) or closed.
func (q *Queue) Take(spare []Entry) (batch []Entry, more bool) {
	clear(spare)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, false
	}
	if len(q.buf) == 0 {
		if q.kicked {
			q.kicked = false
			return spare[:0], true
		}
		// Idle: hold no buffer. The caller drops spare too.
		q.buf = nil
		q.active = q.wake == nil
		return nil, false
	}
	out := q.buf
	q.buf = spare[:0]
	if q.space != nil {
		signal(q.space)
	}
	return out, true
}

// Len is the number of queued entries.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.buf)
}

// Close rejects further pushes, wakes a blocked one and drops what is
// queued. It is idempotent. No drainer is started after Close.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.closed = true
	clear(q.buf)
	q.buf = nil
	if q.space != nil {
		signal(q.space)
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
