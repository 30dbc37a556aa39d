package server

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"orderpush/gateway/internal/wstest"
	"orderpush/pkg/poll"
	"orderpush/pkg/presence"
	"orderpush/pkg/rediskey"
	"orderpush/pkg/redistest"
	"orderpush/pkg/stream/publish"
	"orderpush/pkg/wire"
)

// TestRedisCluster: on Redis Cluster (sharded pub/sub) two replicas serve
// merchants whose channels live in different slots and nodes: events
// published with the same script (SPUBLISH) reach the right sockets in
// order, a reconnect with since replays, presence counts, and a notice
// reaches its connection.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	cc := c.Client(t)
	a, b := startGW(t, c.URL()), startGW(t, c.URL())
	var mids []string
	var pubs []*publisher
	var socks [][]*wstest.Conn
	for i := range 6 {
		mid := fmt.Sprintf("%sc%d", redistest.Unique("m"), i)
		mids = append(mids, mid)
		pubs = append(pubs, newPublisher(t, cc, mid))
		socks = append(socks, []*wstest.Conn{dial(t, a.URL, mid, -1), dial(t, b.URL, mid, -1)})
	}
	for _, ss := range socks {
		for _, s := range ss {
			if _, err := s.WaitEvent(10*time.Second, "hello", 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 20 {
		for _, p := range pubs {
			p.publish(1)
		}
	}
	for i, ss := range socks {
		for _, s := range ss {
			if err := s.WaitSeq(10*time.Second, 20); err != nil {
				t.Fatalf("merchant %s: %v", mids[i], err)
			}
			if err := wstest.CheckStream(s.Frames(), -1, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A cluster that just formed may refuse the first beat (CLUSTERDOWN);
	// presence catches up within PROTOCOL.md's 2 s.
	poll.Within(t, 2*time.Second, "presence on the cluster", func() error {
		n, err := presence.New(cc, 0).Online(context.Background(), mids[0])
		if err == nil && n != 2 {
			err = fmt.Errorf("online %d", n)
		}
		return err
	})
	r := dial(t, b.URL, mids[1], 5)
	if err := r.WaitSeq(5*time.Second, 20); err != nil {
		t.Fatal(err)
	}
	if err := wstest.CheckStream(r.Frames(), 5, false); err != nil {
		t.Fatal(err)
	}
	h := socks[2][0].Frames()[0].Hello()
	frame := wire.MustEncode(wire.EventNotice, 0, 0, wire.NoticeData{Msg: "on a cluster"})
	env, _ := json.Marshal(wire.Notice{ConnID: h.ConnID, Frame: frame})
	poll.Within(t, 5*time.Second, "the notice on a cluster", func() error {
		n, err := publish.New(cc, publish.Options{}).PublishRaw(context.Background(), rediskey.NodeChannel(a.Node), env)
		if err == nil && n == 0 {
			err = errNotYet
		}
		return err
	})
	if _, err := socks[2][0].WaitEvent(5*time.Second, "notice", 1); err != nil {
		t.Fatal(err)
	}
}
