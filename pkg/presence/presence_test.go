package presence_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"orderpush/pkg/presence"
	"orderpush/pkg/rediskey"
	"orderpush/pkg/redistest"
)

func TestOnlineAndLocate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.SharedClient(t)
	r := presence.New(rdb, 500*time.Millisecond)
	m, a, b := redistest.Unique("m"), redistest.Unique("node-a"), redistest.Unique("node-b")

	if n, err := r.Online(ctx, m); err != nil || n != 0 {
		t.Fatalf("online of unknown merchant: %d %v", n, err)
	}
	for _, n := range []string{a, b} {
		if err := r.Beat(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	ca1, ca2, cb := redistest.Unique("c"), redistest.Unique("c"), redistest.Unique("c")
	for conn, node := range map[string]string{ca1: a, ca2: a, cb: b} {
		if err := r.Add(ctx, conn, m, node); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := r.Online(ctx, m); n != 3 {
		t.Fatalf("online = %d, want 3", n)
	}
	c, ok, err := r.Locate(ctx, cb)
	if err != nil || !ok || c.Node != b || c.MerchantID != m {
		t.Fatalf("Locate = %+v %v %v", c, ok, err)
	}
	if err := r.Remove(ctx, ca2, m); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.Online(ctx, m); n != 2 {
		t.Fatalf("online after remove = %d, want 2", n)
	}
	if _, ok, _ := r.Locate(ctx, ca2); ok {
		t.Fatal("removed conn located")
	}
	// Node a leaves; node b stops beating and expires.
	if err := r.Leave(ctx, a); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.Online(ctx, m); n != 1 {
		t.Fatalf("online after leave = %d, want 1", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := r.Online(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead node still counted: %d", n)
		}
		time.Sleep(50 * time.Millisecond) // poll interval under a deadline
	}
	if _, ok, _ := r.Locate(ctx, cb); ok {
		t.Fatal("conn on dead node located")
	}
}

func TestRenewReportsLapse(t *testing.T) {
	t.Parallel()
	rdb := redistest.SharedClient(t)
	r := presence.New(rdb, 0)
	ctx := context.Background()
	node := redistest.Unique("node")
	if was, err := r.Renew(ctx, node); err != nil || was {
		t.Fatalf("first renew: %v %v", was, err)
	}
	if was, err := r.Renew(ctx, node); err != nil || !was {
		t.Fatalf("second renew: %v %v", was, err)
	}
	if ttl := rdb.PTTL(ctx, rediskey.NodeAlive(node)).Val(); ttl <= 0 || ttl > presence.DefaultTTL {
		t.Fatalf("ttl %s", ttl)
	}
	if err := r.Leave(ctx, node); err != nil {
		t.Fatal(err)
	}
	if was, err := r.Renew(ctx, node); err != nil || was {
		t.Fatalf("renew after leave: %v %v", was, err)
	}
}

// TestReserve: the cap holds under concurrent reservations from several
// "replicas", removals free places, and a dead replica's entries stop
// counting.
func TestReserve(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.SharedClient(t)
	r := presence.New(rdb, time.Minute)
	m := redistest.Unique("m")
	nodes := []string{redistest.Unique("node-a"), redistest.Unique("node-b"), redistest.Unique("node-c")}
	for _, n := range nodes {
		if err := r.Beat(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	const limit, tries = 5, 60
	var mu sync.Mutex
	var won []string
	var wg sync.WaitGroup
	for i := range tries {
		wg.Go(func() {
			conn := redistest.Unique("c")
			ok, _, err := r.Reserve(ctx, conn, m, nodes[i%len(nodes)], limit)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				won = append(won, conn)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(won) != limit {
		t.Fatalf("%d of %d concurrent reservations won, want exactly %d", len(won), tries, limit)
	}
	if ok, n, err := r.Reserve(ctx, redistest.Unique("c"), m, nodes[0], limit); ok || n != limit || err != nil {
		t.Fatalf("reserve over the cap = %v %d %v", ok, n, err)
	}
	if err := r.Remove(ctx, won[0], m); err != nil {
		t.Fatal(err)
	}
	// The freed place goes to a connection on node c, so the replica that
	// dies below holds at least one entry whichever goroutines won above.
	if ok, _, _ := r.Reserve(ctx, redistest.Unique("c"), m, nodes[2], limit); !ok {
		t.Fatal("a freed place was not given")
	}
	// Node c's liveness goes: its entries must stop counting.
	if err := r.Leave(ctx, nodes[2]); err != nil {
		t.Fatal(err)
	}
	if ok, n, err := r.Reserve(ctx, redistest.Unique("c"), m, nodes[0], limit); !ok || err != nil {
		t.Fatalf("dead replica's entries still count: %v %d %v", ok, n, err)
	}
}
