package redistest

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a private Redis Cluster of three masters, no replicas.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts three cluster-enabled redis-servers on free ports,
// joins them with redis-cli --cluster create, and waits until every slot is
// served. It stops them when the test ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli not found on PATH (package redis-tools; the README's test command installs it): %v", err)
	}
	c := &Cluster{}
	var addrs []string
	for i := 0; i < 3; i++ {
		s := &Server{t: t, dir: t.TempDir(), Port: FreePort(t)}
		s.bin = mustRedisServer(t)
		s.extra = []string{"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(s.dir, "nodes.conf"),
			"--cluster-node-timeout", "2000"}
		s.Start()
		t.Cleanup(s.Stop)
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr())
	}
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...),
		"--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Every node must see the whole slot map: ClusterInfo through a
	// cluster client asks one node, and another may still answer CLUSTERDOWN.
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range c.Nodes {
		nc := redis.NewClient(&redis.Options{Addr: n.Addr()})
		for {
			info, err := nc.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				_ = nc.Close()
				t.Fatalf("cluster node %s not ok: %v %s", n.Addr(), err, info)
			}
			time.Sleep(50 * time.Millisecond) // poll interval under a deadline
		}
		_ = nc.Close()
	}
	return c
}

// URL is the REDIS_URL of the cluster, in the redis-cluster:// form.
func (c *Cluster) URL() string {
	u := "redis-cluster://" + c.Nodes[0].Addr()
	for i, n := range c.Nodes[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + n.Addr()
	}
	return u
}

// Client returns a cluster client closed when the test ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(n.Port))
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// MoveSlot hands slot, which must hold no keys, from the node that serves
// it to the next one, the way a resharding does (IMPORTING and MIGRATING,
// then NODE on the new owner first, so its epoch wins), and waits until
// every node agrees. The old owner drops its sharded subscribers of the
// slot (sunsubscribe), as Redis does when a slot moves away. It returns the
// new owner.
func (c *Cluster) MoveSlot(t testing.TB, slot int) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clients := make([]*redis.Client, len(c.Nodes))
	ids := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: n.Addr()})
		defer clients[i].Close()
		id, err := clients[i].ClusterMyID(ctx).Result()
		if err != nil {
			t.Fatalf("cluster myid %s: %v", n.Addr(), err)
		}
		ids[i] = id
	}
	from := c.owner(ctx, t, clients[0], slot)
	to := (from + 1) % len(c.Nodes)
	if n, err := clients[from].ClusterCountKeysInSlot(ctx, slot).Result(); err != nil || n != 0 {
		t.Fatalf("slot %d holds %d keys (%v): MoveSlot moves only empty slots", slot, n, err)
	}
	steps := []struct {
		node int
		args []any
	}{
		{to, []any{"IMPORTING", ids[from]}},
		{from, []any{"MIGRATING", ids[to]}},
		{to, []any{"NODE", ids[to]}},
		{from, []any{"NODE", ids[to]}},
	}
	for i := range c.Nodes {
		if i != from && i != to {
			steps = append(steps, struct {
				node int
				args []any
			}{i, []any{"NODE", ids[to]}})
		}
	}
	for _, st := range steps {
		args := append([]any{"CLUSTER", "SETSLOT", slot}, st.args...)
		if err := clients[st.node].Do(ctx, args...).Err(); err != nil {
			t.Fatalf("%v on %s: %v", args, c.Nodes[st.node].Addr(), err)
		}
	}
	for _, cl := range clients {
		for c.owner(ctx, t, cl, slot) != to {
			if ctx.Err() != nil {
				t.Fatalf("slot %d: node %s does not see the move", slot, cl.Options().Addr)
			}
			time.Sleep(20 * time.Millisecond) // poll interval under the context's deadline
		}
	}
	return c.Nodes[to]
}

// owner is the index of the node that serves slot, as cl's node sees it.
func (c *Cluster) owner(ctx context.Context, t testing.TB, cl *redis.Client, slot int) int {
	t.Helper()
	ranges, err := cl.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatalf("cluster slots: %v", err)
	}
	for _, r := range ranges {
		if r.Start <= slot && slot <= r.End && len(r.Nodes) > 0 {
			for i, n := range c.Nodes {
				if strings.HasSuffix(r.Nodes[0].Addr, ":"+strconv.Itoa(n.Port)) {
					return i
				}
			}
		}
	}
	t.Fatalf("no node serves slot %d", slot)
	return -1
}
