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

// TestRoutingAcrossReplicas (issue 2): sockets of three merchants spread
// over two replicas; events arrive on exactly the right sockets, in seq
// order, with the right orderSum, and nowhere else.
func TestRoutingAcrossReplicas(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	a, b := startGW(t, url), startGW(t, url)
	rdb := newRedis(t, url)
	mids := []string{redistest.Unique("m"), redistest.Unique("m"), redistest.Unique("m")}
	pubs := map[string]*publisher{}
	socks := map[string][]*wstest.Conn{}
	for i, mid := range mids {
		pubs[mid] = newPublisher(t, rdb, mid)
		for j := range 4 {
			base := a.URL
			if (i+j)%2 == 1 {
				base = b.URL
			}
			c := dial(t, base, mid, -1)
			if _, err := c.WaitEvent(5*time.Second, "hello", 1); err != nil {
				t.Fatal(err)
			}
			socks[mid] = append(socks[mid], c)
		}
	}
	const n = 60
	for i := range n {
		pubs[mids[i%3]].publish(1)
		pubs[mids[(i+1)%3]].publish(1)
	}
	for _, mid := range mids {
		want := pubs[mid].seq
		for _, c := range socks[mid] {
			if err := c.WaitSeq(10*time.Second, want); err != nil {
				t.Fatal(err)
			}
			fs := c.Frames()
			if err := wstest.CheckStream(fs, -1, false); err != nil {
				t.Fatal(err)
			}
			for _, f := range fs[1:] {
				var d wire.OrderData
				if err := json.Unmarshal(f.Data, &d); err != nil || d.Order.MerchantID != mid || d.OrderSum != int64(f.Seq) {
					t.Fatalf("socket of %s got %s", mid, f.Raw)
				}
			}
			if got := len(wstest.Seqs(fs)); uint64(got) != want {
				t.Fatalf("socket of %s got %d events, want %d", mid, got, want)
			}
		}
	}
}

// TestReplayOnAnotherReplica (issue 4): disconnect, miss N events,
// reconnect to another replica with since, get exactly the N in order, then
// live ones.
func TestReplayOnAnotherReplica(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	a, b := startGW(t, url), startGW(t, url)
	mid := redistest.Unique("m")
	p := newPublisher(t, newRedis(t, url), mid)
	c := dial(t, a.URL, mid, -1)
	p.publish(10)
	if err := c.WaitSeq(5*time.Second, 10); err != nil {
		t.Fatal(err)
	}
	c.Close()
	p.publish(25) // missed: 11..35
	c2 := dial(t, b.URL, mid, 10)
	if err := c2.WaitSeq(5*time.Second, 35); err != nil {
		t.Fatal(err)
	}
	p.publish(5) // live: 36..40
	if err := c2.WaitSeq(5*time.Second, 40); err != nil {
		t.Fatal(err)
	}
	fs := c2.Frames()
	if err := wstest.CheckStream(fs, 10, false); err != nil {
		t.Fatal(err)
	}
	if h := fs[0].Hello(); h.Seq != 35 || h.Node != b.Node {
		t.Fatalf("hello %s", fs[0].Raw)
	}
	if got := wstest.Seqs(fs); len(got) != 30 || got[0] != 11 || got[29] != 40 {
		t.Fatalf("seqs %v", got)
	}
}

// TestReplicaKilled (issue 4): a replica dies abruptly while orders stream;
// its clients reconnect to a survivor with since, and every client ends
// with every seq exactly once, in order.
func TestReplicaKilled(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	gws := []*gw{startGW(t, url), startGW(t, url), startGW(t, url)}
	mid := redistest.Unique("m")
	p := newPublisher(t, newRedis(t, url), mid)
	var fol []*wstest.Follower
	for i := range 9 {
		bases := []string{gws[i%3].URL, gws[(i+1)%3].URL, gws[(i+2)%3].URL}
		f := wstest.Follow(bases, merchantToken(t, mid))
		t.Cleanup(f.Stop)
		fol = append(fol, f)
	}
	for _, f := range fol {
		if err := f.Connected(10*time.Second, 1); err != nil {
			t.Fatal(err)
		}
	}
	const total = 400
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			p.publish(1)
			if i%20 == 0 {
				time.Sleep(5 * time.Millisecond) // pace the stream so the kill lands mid-way
			}
		}
	}()
	if err := fol[0].WaitSeq(10*time.Second, 100); err != nil {
		t.Fatal(err)
	}
	gws[0].Kill()
	<-done
	for i, f := range fol {
		if err := f.WaitSeq(20*time.Second, total); err != nil {
			t.Fatalf("follower %d: %v", i, err)
		}
		if err := f.Check(1, total); err != nil {
			t.Fatalf("follower %d: %v (%s)", i, err, f.Summary())
		}
	}
	for i := 0; i < 9; i += 3 {
		if fol[i].Conns() < 2 {
			t.Fatalf("follower %d on the killed replica did not reconnect: %s", i, fol[i].Summary())
		}
	}
}

// TestPresence (issue 4): counts are exact while replicas live; a killed
// replica's connections leave presence within the 10 s expiry.
func TestPresence(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	a, b := startGW(t, url), startGW(t, url)
	rdb := newRedis(t, url)
	reg := presence.New(rdb, 0)
	mid := redistest.Unique("m")
	online := func(want int) func() error {
		return func() error {
			n, err := reg.Online(context.Background(), mid)
			if err == nil && n != want {
				err = fmt.Errorf("online %d, want %d", n, want)
			}
			return err
		}
	}
	var onA []*wstest.Conn
	for range 3 {
		onA = append(onA, dial(t, a.URL, mid, -1))
	}
	for range 2 {
		c := dial(t, b.URL, mid, -1)
		if _, err := c.WaitEvent(5*time.Second, "hello", 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range onA {
		if _, err := c.WaitEvent(5*time.Second, "hello", 1); err != nil {
			t.Fatal(err)
		}
	}
	poll.Within(t, 5*time.Second, "5 sockets online", online(5))
	onA[0].Close()
	poll.Within(t, 5*time.Second, "4 sockets online", online(4))
	killed := time.Now()
	b.Kill()
	// Nothing renews the dead replica's liveness key any more, so its
	// connections stop counting when it expires: within 10 s of the kill.
	if ttl := rdb.PTTL(context.Background(), rediskey.NodeAlive(b.Node)).Val(); ttl <= 0 || ttl > 10*time.Second {
		t.Fatalf("liveness key of the killed replica expires in %s", ttl)
	}
	poll.Within(t, 15*time.Second, "2 sockets online", online(2))
	t.Logf("killed replica left presence after %s", time.Since(killed).Round(100*time.Millisecond))
}

// TestNoticeRouting: a notice published on a replica's node channel, as the
// order API routes it, reaches that one connection only.
func TestNoticeRouting(t *testing.T) {
	t.Parallel()
	url := redistest.SharedURL(t)
	a, b := startGW(t, url), startGW(t, url)
	rdb := newRedis(t, url)
	mid := redistest.Unique("m")
	ca, cb := dial(t, a.URL, mid, -1), dial(t, b.URL, mid, -1)
	hb, err := cb.WaitEvent(5*time.Second, "hello", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.WaitEvent(5*time.Second, "hello", 1); err != nil {
		t.Fatal(err)
	}
	connID := hb.Hello().ConnID
	loc, ok, err := presence.New(rdb, 0).Locate(context.Background(), connID)
	if err != nil || !ok || loc.Node != b.Node || loc.MerchantID != mid {
		t.Fatalf("locate %s: %+v %v %v", connID, loc, ok, err)
	}
	frame := wire.MustEncode(wire.EventNotice, 0, 0, wire.NoticeData{Msg: "hello <b>&"})
	env, _ := json.Marshal(wire.Notice{ConnID: connID, Frame: frame})
	// The replica subscribes its node channel at start; wait until it does.
	poll.Within(t, 5*time.Second, "the notice through the node channel", func() error {
		n, err := publish.New(rdb, publish.Options{}).PublishRaw(context.Background(), rediskey.NodeChannel(loc.Node), env)
		if err == nil && n == 0 {
			err = errNotYet
		}
		return err
	})
	got, err := cb.WaitEvent(5*time.Second, "notice", 1)
	if err != nil {
		t.Fatal(err)
	}
	var d wire.NoticeData
	if err := json.Unmarshal(got.Data, &d); err != nil || d.Msg != "hello <b>&" {
		t.Fatalf("notice %s", got.Raw)
	}
	newPublisher(t, rdb, mid).publish(1)
	if err := ca.WaitSeq(5*time.Second, 1); err != nil {
		t.Fatal(err)
	}
	for _, f := range ca.Frames() {
		if f.Event == "notice" {
			t.Fatalf("notice reached another connection: %s", f.Raw)
		}
	}
}
