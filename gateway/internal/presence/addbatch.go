package presence

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	redispresence "orderpush/pkg/presence"
)

// addBatchTimeout bounds one batched presence write.
const addBatchTimeout = 2 * time.Second

// addBatcher writes the presence entries of concurrent connects in one
// pipeline (group commit): the first caller with no write in flight becomes
// the leader and writes everything queued, again and again until nothing
// is; the others wait for their batch's result. A burst of connects then
// costs one Redis round trip per batch instead of one per socket, and
// holds one pooled Redis connection instead of one each.
type addBatcher struct {
	rdb  redis.UniversalClient
	node string

	mu      sync.Mutex
	pending []*addReq // guarded by mu
	running bool      // guarded by mu: a leader is writing
}

type addReq struct {
	conn, mid string
	done      chan error // buffered: the leader never waits on it
}

// add records one connection; it returns when its batch was written.
func (b *addBatcher) add(ctx context.Context, conn, mid string) error {
	req := &addReq{conn: conn, mid: mid, done: make(chan error, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, req)
	if b.running {
		b.mu.Unlock()
		select {
		case err := <-req.done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b.running = true
	for len(b.pending) > 0 {
		batch := b.pending
		b.pending = nil
		b.mu.Unlock()
		b.write(batch)
		b.mu.Lock()
	}
	b.running = false
	b.mu.Unlock()
	return <-req.done
}

// write runs one batch. Its context is its own: a leader's connect giving
// up must not fail the others'.
func (b *addBatcher) write(batch []*addReq) {
	ctx, cancel := context.WithTimeout(context.Background(), addBatchTimeout)
	defer cancel()
	_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, r := range batch {
			redispresence.AddTo(ctx, p, r.conn, r.mid, b.node)
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("presence add (batch of %d): %w", len(batch), err)
	}
	for _, r := range batch {
		r.done <- err
	}
}
