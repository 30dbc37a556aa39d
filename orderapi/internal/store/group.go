package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"orderpush/pkg/wire"
)

// ErrClosed is returned by calls made after Close.
var ErrClosed = errors.New("store closed")

// maxGroup bounds the orders one SQLite commit carries.
const maxGroup = 128

// groupCommit gives concurrent CreateOrder calls one commit, so one fsync
// and one transaction's overhead, for all orders waiting at that moment
// instead of one each. With synchronous(FULL) every SQLite commit waits for
// the disk; measured on the development machine, orders one per
// transaction reached about 160/s under 16 clients, grouped several times
// that. On PostgreSQL the group is also what lets the orders be pipelined
// (pgGroup): two round trips per group instead of five per order.
//
// Each order runs under its own SAVEPOINT, so a failing order is rolled
// back alone; a failing COMMIT fails every order of the group, and none
// of them is stored. Nothing waits to fill a group: a committer takes
// what is queued while the previous commit ran.
//
// Several committers may run at once (PostgreSQL). Each sorts its group by
// merchant before writing, so every transaction takes merchant row locks in
// the same order and two groups cannot deadlock on them.
//
// Each committer hands its committed groups to a publisher goroutine of
// its own, which publishes their events (Store.OnCommit) and only then
// answers their requests, so an order's frame is on its way before its
// 201. The committer does not wait for Redis: it hands the group over and
// writes the next. Groups queued while a publish ran go out together in
// the next one; one committer's groups hold each merchant's events in seq
// order, so its publisher sends them in that order.
type groupCommit struct {
	s    *Store
	reqs chan *groupReq // never closed
	stop chan struct{}  // closed by close
	wg   sync.WaitGroup // the committers and their publishers
	once sync.Once
	// write stores a sorted group in one transaction, filling res.
	write func(ctx context.Context, batch []*groupReq, res []groupRes)
}

// committedGroup is a group whose transaction has ended; res holds each
// request's answer.
type committedGroup struct {
	batch []*groupReq
	res   []groupRes
}

// publishQueue bounds the committed groups waiting for the publisher.
// When it is full (Redis slower than the database), the committer answers
// a group itself and leaves its events to the outbox relay rather than
// hold the writer.
const publishQueue = 16

// maxPublish bounds the events of the groups one publish takes together.
const maxPublish = 1024

// groupReq is an order to create or, with receipts set, a receipts batch
// to apply.
type groupReq struct {
	ctx      context.Context
	in       NewOrder
	receipts *receiptsReq
	frame    FrameFunc
	res      chan groupRes // buffered 1; answered exactly once
}

type receiptsReq struct {
	acks []wire.AckReceipt
	seen []wire.SeenReceipt
}

type groupRes struct {
	o        wire.Order
	ev       Event
	receipts BatchResult
	err      error
}

// events are what r committed, given its result res.
func (r *groupReq) events(res groupRes) []Event {
	switch {
	case res.err != nil:
		return nil
	case r.receipts != nil:
		return res.receipts.Events
	}
	return []Event{res.ev}
}

// newGroupCommit starts committers goroutines that store groups with write.
func newGroupCommit(s *Store, committers int, write func(context.Context, []*groupReq, []groupRes)) *groupCommit {
	g := &groupCommit{s: s, reqs: make(chan *groupReq), stop: make(chan struct{}), write: write}
	for range committers {
		committed := make(chan committedGroup, publishQueue)
		g.wg.Go(func() { g.run(committed) })
		g.wg.Go(func() { g.publishLoop(committed) })
	}
	return g
}

// do hands r to a committer and waits for its answer. Once handed over it
// waits even if ctx ends, so the caller never reports a failure for
// something that was committed.
func (g *groupCommit) do(ctx context.Context, r *groupReq) groupRes {
	r.ctx, r.res = ctx, make(chan groupRes, 1)
	select {
	case g.reqs <- r:
	case <-ctx.Done():
		return groupRes{err: ctx.Err()}
	case <-g.stop:
		return groupRes{err: ErrClosed}
	}
	return <-r.res
}

// run writes groups and hands them to committed, which it closes when it
// stops.
func (g *groupCommit) run(committed chan<- committedGroup) {
	defer close(committed)
	for {
		var batch []*groupReq
		select {
		case r := <-g.reqs:
			batch = append(batch, r)
		case <-g.stop:
			return
		}
	collect:
		for len(batch) < maxGroup {
			select {
			case r := <-g.reqs:
				batch = append(batch, r)
			default:
				break collect
			}
		}
		g.commit(batch, committed)
	}
}

// commit runs batch in one transaction and hands it to committed, its
// publisher; when that one is publishQueue groups behind, commit answers
// the requests itself and leaves their events to the relay.
func (g *groupCommit) commit(batch []*groupReq, committed chan<- committedGroup) {
	// One lock order for every group: see groupCommit.
	slices.SortStableFunc(batch, func(a, b *groupReq) int { return strings.Compare(a.in.MerchantID, b.in.MerchantID) })
	res := make([]groupRes, len(batch))
	// The requests' own contexts may end mid-group; the group's deadline is
	// its own so that one leaving client cannot abort the others.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g.write(ctx, batch, res)
	select {
	case committed <- committedGroup{batch: batch, res: res}:
	default:
		answer(batch, res)
	}
}

// answer gives each request of batch its result.
func answer(batch []*groupReq, res []groupRes) {
	for i, r := range batch {
		r.res <- res[i]
	}
}

// publishLoop publishes the events of the groups from committed, in the
// order they were queued, and answers their requests.
func (g *groupCommit) publishLoop(committed <-chan committedGroup) {
	for c := range committed {
		groups := []committedGroup{c}
		n := len(c.batch)
	collect:
		for n < maxPublish {
			select {
			case c, ok := <-committed:
				if !ok {
					break collect
				}
				groups = append(groups, c)
				n += len(c.batch)
			default:
				break collect
			}
		}
		evs := make([]Event, 0, n)
		for _, c := range groups {
			for i, r := range c.batch {
				evs = append(evs, r.events(c.res[i])...)
			}
		}
		g.s.publishCommitted(evs)
		for _, c := range groups {
			answer(c.batch, c.res)
		}
	}
}

// savepointGroup stores batch in one transaction, each request under its
// own savepoint, and sets res. Any request failing alone gets its own
// error; a failing transaction fails all of them.
func (s *Store) savepointGroup(ctx context.Context, batch []*groupReq, res []groupRes) {
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		for i, r := range batch {
			if err := r.ctx.Err(); err != nil {
				res[i].err = err // not started: nothing of it is written
				continue
			}
			if err := s.savepoint(ctx, tx, r, &res[i]); err != nil {
				return err // the transaction is in an unknown state: keep none of it
			}
		}
		return nil
	})
	for i := range batch {
		if err != nil && res[i].err == nil {
			res[i] = groupRes{err: err}
		}
	}
}

// savepoint runs one request of a group under its own savepoint and sets
// res; res.err fails this request alone. An error returned means the
// savepoint could not be undone and the whole group must roll back.
func (s *Store) savepoint(ctx context.Context, tx *sqlx.Tx, r *groupReq, res *groupRes) error {
	if _, err := s.txExec(ctx, tx, savepointOne); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	var err error
	if r.receipts != nil {
		res.receipts, err = s.receiptsTx(ctx, tx, s.now(), r.receipts.acks, r.receipts.seen, r.frame)
	} else {
		res.o, res.ev, err = s.createInTx(ctx, tx, r.in, r.frame)
	}
	if err != nil {
		if _, rerr := s.txExec(ctx, tx, rollbackOne); rerr != nil {
			return errors.Join(err, fmt.Errorf("rollback to savepoint: %w", rerr))
		}
	}
	if _, rerr := s.txExec(ctx, tx, releaseOne); rerr != nil {
		return fmt.Errorf("release savepoint: %w", rerr)
	}
	if err != nil {
		*res = groupRes{err: err}
	}
	return nil
}

// close stops the committers after the groups in progress, and the
// publishers after their publish.
func (g *groupCommit) close() {
	g.once.Do(func() { close(g.stop) })
	g.wg.Wait()
}
