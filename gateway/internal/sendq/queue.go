// Package sendq is the bounded send queue of one socket: the fan-out side
// pushes frames without ever blocking, one writer takes them in batches.
//
// It is a small type of its own so the socket's writer can be replaced (for
// example by a shared pool of writers for idle sockets) without touching the
// fan-out. A Queue is safe for concurrent use by any number of pushers and one
// taker.
package sendq

import (
	"context"
	"errors"
	"sync"
)

// Entry is one frame to write. Data is shared between sockets and must not
// be modified. TS is the publish time in Unix milliseconds used for the
// delivery lag metric, or 0 when the frame is not live (replay, hello).
type Entry struct {
	Data []byte
	TS   int64
}

// ErrClosed is returned by Push after Close.
var ErrClosed = errors.New("send queue closed")

// Queue is a bounded FIFO of entries.
type Queue struct {
	limit int
	// ready has room for one signal: "there is something to take, or the
	// queue closed". Never closed, so a send on it cannot panic.
	ready chan struct{}
	// space is signalled after Take, for a blocked Push.
	space chan struct{}

	mu     sync.Mutex
	buf    []Entry // guarded by mu
	closed bool    // guarded by mu
	done   chan struct{}
}

// New returns a queue that holds at most limit entries (limit >= 1).
func New(limit int) *Queue {
	if limit < 1 {
		limit = 1
	}
	return &Queue{
		limit: limit,
		ready: make(chan struct{}, 1),
		space: make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
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
	q.mu.Unlock()
	signal(q.ready)
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
			q.mu.Unlock()
			signal(q.ready)
			return nil
		}
		q.mu.Unlock()
		select {
		case <-q.space:
		case <-q.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Ready is signalled when entries may be waiting or the queue closed.
func (q *Queue) Ready() <-chan struct{} { return q.ready }

// Take returns every queued entry and empties the queue. spare, the
// previous batch, becomes the queue's buffer (so the two slices swap and a
// steady stream allocates nothing); Take clears it first so written frames
// can be collected.
func (q *Queue) Take(spare []Entry) []Entry {
	clear(spare)
	q.mu.Lock()
	out := q.buf
	q.buf = spare[:0]
	if q.closed {
		q.buf = nil
	}
	q.mu.Unlock()
	signal(q.space)
	return out
}

// Len is the number of queued entries.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.buf)
}

// Close rejects further pushes, wakes blocked ones and drops what is queued.
// It is idempotent.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.closed = true
	clear(q.buf)
	q.buf = nil
	close(q.done)
	signal(q.ready)
}

// Done is closed by Close.
func (q *Queue) Done() <-chan struct{} { return q.done }

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
