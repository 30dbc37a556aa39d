package publish_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"orderpush/pkg/config"
	"orderpush/pkg/rediskey"
	"orderpush/pkg/redistest"
	"orderpush/pkg/stream"
	"orderpush/pkg/stream/publish"
)

// TestPublishOnCluster runs the publish and state scripts on a real Redis
// Cluster: the merchant's keys and channel share a slot, and delivery is by
// SPUBLISH to a sharded subscriber.
func TestPublishOnCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cluster := redistest.StartCluster(t)
	rc, err := config.ParseRedisURL(cluster.URL())
	if err != nil || rc.Cluster == nil {
		t.Fatalf("cluster url %s: %v", cluster.URL(), err)
	}
	rdb := rc.NewRedis("test")
	defer rdb.Close()
	p, r := publish.New(rdb, publish.Options{}), stream.New(rdb)
	if !p.Sharded() {
		t.Fatal("cluster client not detected as sharded")
	}
	for _, m := range []string{"m1", "m2", "shop-42"} {
		sub := cluster.Client(t).SSubscribe(ctx, rediskey.Channel(m))
		if _, err := sub.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		if ok, err := p.Publish(ctx, m, 1, 1, frame(1)); err != nil || !ok {
			t.Fatalf("publish %s: %v %v", m, ok, err)
		}
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil || msg.Payload != string(frame(1)) {
			t.Fatalf("%s received %v %v", m, msg, err)
		}
		_ = sub.Close()
		if st, err := r.State(ctx, m); err != nil || st.Seq != 1 {
			t.Fatalf("%s state %+v %v", m, st, err)
		}
		if evs, err := r.History(ctx, m, 0, 0); err != nil || len(evs) != 1 {
			t.Fatalf("%s history %v %v", m, evs, err)
		}
		// The state script reads the history's TTL: both keys share a slot.
		if err := r.SetState(ctx, m, stream.State{Seq: 2, OrderSum: 2}); err != nil {
			t.Fatalf("%s set state: %v", m, err)
		}
		if st, err := r.State(ctx, m); err != nil || st.Seq != 2 {
			t.Fatalf("%s state after SetState %+v %v", m, st, err)
		}
	}

	// A batch's pipeline is split per node; each merchant's events still
	// arrive in order, by SPUBLISH. Their channels hash to slots on all
	// three nodes, and they are not used above.
	merchants := []string{"batch-1", "batch-2", "batch-3", "batch-4"}
	cc := cluster.Client(t)
	checkBatch(t, p, r, subscribe(t, merchants, func(ch string) *redis.PubSub { return cc.SSubscribe(ctx, ch) }))
}
