package publish

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Event is one event of a merchant's stream, as PublishBatch takes it.
type Event struct {
	MerchantID string
	Seq        uint64
	OrderSum   int64
	Frame      []byte
}

// PublishBatch publishes each event as Publish does, all in one pipelined
// round trip (on a cluster, one per node holding their merchants). The
// scripts run in the order of evs on each node, so a merchant's events
// given in seq order reach its channel in seq order. It returns one error
// per event, nil where the event is in Redis (published now or before):
// the events fail or succeed one by one, as a node may.
func (p *Publisher) PublishBatch(ctx context.Context, evs []Event) []error {
	cmds := make([]*redis.Cmd, len(evs))
	p.pipeline(ctx, evs, cmds, func(i int) bool { return true }, publishScript.EvalSha)
	// A Redis that restarted or failed over has lost its script cache, and
	// a pipeline cannot fall back to EVAL per command as Run does: send the
	// whole script once more for the events refused, in the same order.
	p.pipeline(ctx, evs, cmds, func(i int) bool { return redis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") }, publishScript.Eval)
	errs := make([]error, len(evs))
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			errs[i] = fmt.Errorf("publish %s seq %d: %w", evs[i].MerchantID, evs[i].Seq, err)
		}
	}
	return errs
}

// pipeline sends run for the events that pick selects, in one pipeline,
// and stores their commands in cmds.
func (p *Publisher) pipeline(ctx context.Context, evs []Event, cmds []*redis.Cmd, pick func(int) bool,
	run func(context.Context, redis.Scripter, []string, ...any) *redis.Cmd) {
	var n int
	for i := range evs {
		if pick(i) {
			n++
		}
	}
	if n == 0 {
		return
	}
	// Each command's own error is read afterwards; Pipelined's is only the
	// first of them.
	_, _ = p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, ev := range evs {
			if pick(i) {
				keys, args := p.scriptArgs(ev.MerchantID, ev.Seq, ev.OrderSum, ev.Frame)
				cmds[i] = run(ctx, pipe, keys, args...)
			}
		}
		return nil
	})
}
