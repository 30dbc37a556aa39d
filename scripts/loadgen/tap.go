package loadgen

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"orderpush/pkg/rediskey"
)

// redisTap is a plain go-redis subscriber on the merchants' channels while a
// flow runs: the same frames the gateways get, at the same moment, minus the
// gateway. Its receipts split an end-to-end latency into the part up to
// Redis (order API, database, publish script) and the gateway's part.
type redisTap struct {
	e    *Env
	ps   *redis.PubSub
	idx  map[string]int // channel -> merchant index
	done chan struct{}

	// Owned by the receiving goroutine until done is closed.
	receipts [][]Receipt // by merchant
}

func startTap(ctx context.Context, e *Env, merchants []string, orderNos bool) (*redisTap, error) {
	if e.Redis == nil {
		return nil, nil
	}
	t := &redisTap{e: e, idx: make(map[string]int, len(merchants)), done: make(chan struct{}), receipts: make([][]Receipt, len(merchants))}
	chans := make([]string, len(merchants))
	for i, m := range merchants {
		chans[i] = rediskey.Channel(m)
		t.idx[chans[i]] = i
	}
	t.ps = e.Redis.Subscribe(ctx)
	if err := t.ps.Subscribe(ctx, chans...); err != nil {
		t.ps.Close()
		return nil, fmt.Errorf("tap subscribe: %w", err)
	}
	for range chans {
		if _, err := t.ps.Receive(ctx); err != nil {
			t.ps.Close()
			return nil, fmt.Errorf("tap subscribe: %w", err)
		}
	}
	ch := t.ps.Channel(redis.WithChannelSize(1 << 16))
	go func() {
		defer close(t.done)
		for msg := range ch {
			at := e.Now()
			m, ok := t.idx[msg.Channel]
			if !ok {
				continue
			}
			b := []byte(msg.Payload)
			h, err := ParseHead(b)
			if err != nil || h.Seq == 0 {
				continue
			}
			r := Receipt{Seq: h.Seq, At: at}
			if orderNos {
				r.OrderNo = string(OrderNo(b))
			}
			t.receipts[m] = append(t.receipts[m], r)
		}
	}()
	return t, nil
}

// stop ends the subscription and returns the latency of every frame the tap
// got, measured from its job's send time.
func (t *redisTap) stop(f *orderFlow) Latencies {
	var lat Latencies
	if t == nil {
		return lat
	}
	_ = t.ps.Close()
	<-t.done
	for m, rs := range t.receipts {
		for _, r := range rs {
			if i := f.jobOf(m, r); i >= 0 {
				lat.Add(r.At - timeOf(f, i))
			}
		}
	}
	return lat
}
