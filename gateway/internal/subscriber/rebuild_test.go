package subscriber

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"orderpush/pkg/poll"
	"orderpush/pkg/redistest"
)

// slowDialer is the fault: while held, every new connection waits until
// released (or its context ends), so a rebuild that dials stays in the dial.
type slowDialer struct {
	mu      sync.Mutex
	gate    chan struct{} // nil: not held
	waiting chan struct{} // closed when a dial waits at the gate
	d       net.Dialer
}

func (d *slowDialer) hold() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gate, d.waiting = make(chan struct{}), make(chan struct{})
}

func (d *slowDialer) release() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gate != nil {
		close(d.gate)
		d.gate = nil
	}
}

func (d *slowDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	gate, waiting := d.gate, d.waiting
	if gate != nil {
		select {
		case <-waiting:
		default:
			close(waiting)
		}
	}
	d.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return d.d.DialContext(ctx, network, addr)
}

// TestSlotMoveRebuild moves the slot of subscribed channels to another node
// of a real Redis Cluster. The old owner drops their sharded subscriptions
// and the Subscriber rebuilds them on the new owner. The rebuild's dial is
// held: meanwhile Subscribe and Unsubscribe, of other slots and of the
// moving one, return; once it is through, no wanted channel is lost, the
// one given up meanwhile is not subscribed, and the one added meanwhile is.
func TestSlotMoveRebuild(t *testing.T) {
	c := redistest.StartCluster(t)
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, n.Addr())
	}
	d := &slowDialer{}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Dialer: d.dial})
	t.Cleanup(func() { _ = cc.Close() })
	pub := c.Client(t)
	s, rec, _ := newSub(t, cc)
	ctx := tctx(t)

	moving := []string{"{mv}:1", "{mv}:2", "{mv}:3"}
	added := "{mv}:4"
	other := []string{"{o1}:1", "{o2}:1"}
	for _, ch := range append(append([]string(nil), moving...), other...) {
		if err := s.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	receivers := func(ch string) int64 {
		n, err := pub.SPublish(ctx, ch, "x").Result()
		if err != nil {
			t.Fatalf("SPUBLISH %s: %v", ch, err)
		}
		return n
	}

	d.hold()
	// Before the Subscriber's Close (cleanups run last first): a failed
	// test must not leave go-redis's reconnects waiting at the gate.
	t.Cleanup(d.release)
	c.MoveSlot(t, slot(moving[0]))
	select {
	case <-d.waiting:
	case <-ctx.Done():
		t.Fatal("no dial after the slot moved: the subscriber did not rebuild")
	}
	// The rebuild waits in its dial. Each call must return on its own.
	returns := func(what string, call func()) {
		t.Helper()
		done := make(chan struct{})
		go func() {
			defer close(done)
			call()
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s blocked by the rebuild", what)
		}
	}
	returns("Subscribe of another slot", func() {
		if err := s.Subscribe(ctx, "{o1}:2"); err != nil {
			t.Error(err)
		}
	})
	returns("Unsubscribe of another slot", func() { s.Unsubscribe(ctx, other[1]) })
	returns("Unsubscribe of the moving slot", func() { s.Unsubscribe(ctx, moving[2]) })
	// A Subscribe of the moving slot waits for its confirmation, which only
	// the new owner gives; it must get as far as sending the command.
	addDone := make(chan error, 1)
	go func() { addDone <- s.Subscribe(ctx, added) }()
	poll.True(t, "the Subscribe of the moving slot to send", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		g := s.groups[slot(added)]
		return g != nil && g.chans[added] != nil && g.chans[added].sent == 1
	})
	d.release()

	if err := <-addDone; err != nil {
		t.Fatalf("Subscribe during the rebuild: %v", err)
	}
	for _, ch := range []string{moving[0], moving[1], added, other[0], "{o1}:2"} {
		poll.True(t, ch+" delivered", func() bool { return receivers(ch) == 1 })
		poll.True(t, ch+" received", func() bool { return len(rec.got(ch)) > 0 })
	}
	poll.True(t, "the channel given up meanwhile to go", func() bool { return receivers(moving[2]) == 0 })
	if n := receivers(other[1]); n != 0 {
		t.Fatalf("%s still has %d receivers", other[1], n)
	}
	// The kept channels may have missed messages while they were moving.
	for _, ch := range moving[:2] {
		if rec.resubscribed(ch) == 0 {
			t.Errorf("%s not reported as resubscribed", ch)
		}
	}
}
