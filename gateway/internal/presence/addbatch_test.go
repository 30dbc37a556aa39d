package presence

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"orderpush/pkg/presence"
	"orderpush/pkg/redistest"
)

// TestAddBatcher: concurrent adds are all written (in fewer round trips
// than adds), and a failed write reaches every caller of its batch.
func TestAddBatcher(t *testing.T) {
	rdb := redistest.SharedClient(t)
	var pipelines counter
	rdb.AddHook(&pipelines)
	node := redistest.Unique("node")
	b := &addBatcher{rdb: rdb, node: node}
	mid := redistest.Unique("m")
	const n = 200
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = b.add(context.Background(), fmt.Sprintf("%s-c%d", mid, i), mid) })
	}
	wg.Wait()
	reg := presence.New(rdb, 0)
	if err := reg.Beat(context.Background(), node); err != nil { // Locate counts live nodes only
		t.Fatal(err)
	}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("add %d: %v", i, errs[i])
		}
		c, ok, err := reg.Locate(context.Background(), fmt.Sprintf("%s-c%d", mid, i))
		if err != nil || !ok || c.Node != node || c.MerchantID != mid {
			t.Fatalf("conn %d: %+v %v %v", i, c, ok, err)
		}
	}
	if got := pipelines.get(); got < 1 || got >= n {
		t.Fatalf("%d pipelines for %d concurrent adds", got, n)
	}
	t.Logf("%d adds in %d pipelines", n, pipelines.get())

	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer dead.Close()
	bd := &addBatcher{rdb: dead, node: "node-batch"}
	var wg2 sync.WaitGroup
	for i := range 20 {
		wg2.Go(func() {
			if err := bd.add(context.Background(), fmt.Sprintf("x%d", i), mid); err == nil {
				t.Error("add to an unreachable Redis succeeded")
			}
		})
	}
	wg2.Wait()
}

// counter is a go-redis hook counting pipelines.
type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *counter) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
		return next(ctx, cmds)
	}
}
