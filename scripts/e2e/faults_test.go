package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
	"orderpush/scripts/launch"
)

// TestRedisOutageLosesNoOrder is issue 4's Redis fault with the real
// services: Redis is killed while orders are being placed and comes back
// EMPTY (no persistence) a few seconds later. Every order must still be
// accepted, and every socket must end with every seq exactly once, in
// order, without a resync: what Redis lost comes from the order API's event
// log through the outbox relay and the gateways' backfill.
func TestRedisOutageLosesNoOrder(t *testing.T) {
	rds := redistest.Start(t)
	sys := launch.StartSystemT(t, launch.SystemSpec{
		Bins: bins, RedisURL: rds.URL(),
		OrderAPIEnv: []string{"OUTBOX_RELAY_INTERVAL=200ms"},
	})
	m := redistest.Unique("e2e-fault")
	var sockets []*socket
	for i := range 4 {
		gw := sys.Gateways[i%2]
		s := dial(t, gw, sys.Token(token.RoleMerchant, m), fmt.Sprintf("%s/%d@%s", m, i, gw.Name))
		checkHello(t, s, m, 0, 0)
		sockets = append(sockets, s)
	}

	// One order every 100 ms; Redis is down from the 15th to the 45th
	// order, about three seconds.
	const total, down, up = 60, 15, 45
	member := sys.Token(token.RoleMember, "u1")
	placed := map[string]bool{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 1; i <= total; i++ {
		switch i {
		case down:
			rds.Stop()
		case up:
			rds.Start()
		}
		<-tick.C
		body := fmt.Sprintf(`{"merchantId":%q,"date":"2022-06-22","price":%d}`, m, i)
		code, resp := call(t, http.MethodPost, sys.OrderAPI.URL+"/orders", member, body)
		if code != http.StatusCreated {
			t.Fatalf("order %d (Redis %s): %d %s", i, map[bool]string{true: "down", false: "up"}[i >= down && i < up], code, resp)
		}
		var o wire.Order
		if err := json.Unmarshal(resp, &o); err != nil {
			t.Fatalf("order %d: %v", i, err)
		}
		placed[o.OrderNo] = true
	}

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range sockets {
		wg.Go(func() {
			seen := map[string]bool{}
			for want := uint64(1); want <= total; want++ {
				f := s.next(t, ctx)
				if f.Event != wire.EventOrder || f.Seq != want {
					t.Errorf("%s: got %s, want order seq %d", s.name, f.raw, want)
					return
				}
				var d struct{ Order wire.Order }
				if err := json.Unmarshal(f.Data, &d); err != nil || !placed[d.Order.OrderNo] || seen[d.Order.OrderNo] {
					t.Errorf("%s: seq %d carries order %q (placed %v, seen %v, %v)", s.name, want, d.Order.OrderNo, placed[d.Order.OrderNo], seen[d.Order.OrderNo], err)
					return
				}
				seen[d.Order.OrderNo] = true
			}
			s.quiet(t, ctx)
		})
	}
	wg.Wait()
}
