package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"orderpush/orderapi/internal/store"
	"orderpush/pkg/pgtest"
	"orderpush/pkg/wire"
)

// each runs f as a subtest on a fresh SQLite file and a fresh PostgreSQL
// database.
func each(t *testing.T, f func(t *testing.T, url string)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		f(t, "sqlite://"+filepath.Join(t.TempDir(), "orders.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		f(t, pgtest.NewDatabase(t))
	})
}

func open(t *testing.T, url string, opt store.Options) *store.Store {
	t.Helper()
	s, err := store.Open(t.Context(), url, opt)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// frame is a FrameFunc like the order service's.
func frame(event string) store.FrameFunc {
	return func(o wire.Order, seq uint64, sum int64, ts time.Time) ([]byte, error) {
		return wire.Encode(event, seq, ts.UnixMilli(), wire.OrderData{OrderSum: sum, Order: o})
	}
}

func create(t *testing.T, s *store.Store, merchant, user string) (wire.Order, store.Event) {
	t.Helper()
	o, ev, err := s.CreateOrder(t.Context(), store.NewOrder{MerchantID: merchant, UserID: user,
		Date: "2022-06-22", Price: 3650}, frame(wire.EventOrder))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return o, ev
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		dialect store.Dialect
		dsn     string
		bad     bool
	}{
		{in: "sqlite://data/orders.db", dialect: store.SQLite, dsn: "data/orders.db"},
		{in: "sqlite:///var/lib/o.db", dialect: store.SQLite, dsn: "/var/lib/o.db"},
		{in: "postgres://u@h:5432/db?sslmode=disable", dialect: store.Postgres, dsn: "postgres://u@h:5432/db?sslmode=disable"},
		{in: "postgresql://h/db", dialect: store.Postgres, dsn: "postgresql://h/db"},
		{in: "sqlite://", bad: true},
		{in: "sqlite://:memory:", bad: true},
		{in: "sqlite://a.db?mode=ro", bad: true},
		{in: "mysql://x", bad: true},
		{in: "", bad: true},
	} {
		d, dsn, err := store.ParseURL(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseURL(%q) = %v, %q; want an error", tc.in, d, dsn)
			}
			continue
		}
		if err != nil || d != tc.dialect || dsn != tc.dsn {
			t.Errorf("ParseURL(%q) = %v, %q, %v; want %v, %q", tc.in, d, dsn, err, tc.dialect, tc.dsn)
		}
	}
}

// Concurrent orders of one merchant get seq 1..N without gap or repeat and
// leave pending at N (issue 2).
func TestConcurrentOrdersSeq(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		s := open(t, url, store.Options{})
		const n = 60
		seqs := make(chan uint64, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, ev := create(t, s, "m1", fmt.Sprintf("u%d", i%7))
				seqs <- ev.Seq
			})
		}
		wg.Wait()
		close(seqs)
		got := slices.Sorted(func(yield func(uint64) bool) {
			for s := range seqs {
				if !yield(s) {
					return
				}
			}
		})
		for i, s := range got {
			if s != uint64(i+1) {
				t.Fatalf("seqs = %v; want 1..%d", got, n)
			}
		}
		m, err := s.Merchant(t.Context(), "m1")
		if err != nil || m.Seq != n || m.Pending != n {
			t.Fatalf("merchant = %+v, %v; want seq %d pending %d", m, err, n, n)
		}
		frames, err := s.Events(t.Context(), "m1", 0, 1000)
		if err != nil || len(frames) != n {
			t.Fatalf("events: %d, %v", len(frames), err)
		}
		for i, f := range frames {
			var d struct {
				Seq  uint64         `json:"seq"`
				Data wire.OrderData `json:"data"`
			}
			if err := json.Unmarshal([]byte(f), &d); err != nil || d.Seq != uint64(i+1) || d.Data.OrderSum != int64(i+1) {
				t.Fatalf("event %d = %s (%v); want seq and orderSum %d", i, f, err, i+1)
			}
		}
	})
}

// A taken order number is retried with a new one in the same transaction.
func TestOrderNoCollisionRetry(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		var mu sync.Mutex
		numbers := []string{"u10000000000000001", "u10000000000000001", "u10000000000000001", "u10000000000000002"}
		s := open(t, url, store.Options{NewOrderNo: func(string, time.Time) string {
			mu.Lock()
			defer mu.Unlock()
			n := numbers[0]
			numbers = numbers[1:]
			return n
		}})
		a, _ := create(t, s, "m1", "u1")
		b, ev := create(t, s, "m1", "u1")
		if a.OrderNo != "u10000000000000001" || b.OrderNo != "u10000000000000002" || ev.Seq != 2 {
			t.Fatalf("orders %s, %s seq %d; want ...01, ...02 seq 2", a.OrderNo, b.OrderNo, ev.Seq)
		}
	})
}

// Each order's own seq (what an ack delivers it by) is the seq of its
// event, also when orders of a shared commit draw taken numbers and go
// again.
func TestOrderSeqMatchesEvent(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		var calls atomic.Int64
		const taken = "u10000000000000001"
		s := open(t, url, store.Options{NewOrderNo: func(user string, now time.Time) string {
			if calls.Add(1)%4 == 1 {
				return taken
			}
			return wire.NewOrderNo(user, now)
		}})
		create(t, s, "m0", "u1") // takes the number every fourth draw returns
		const n = 40
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { create(t, s, "m1", fmt.Sprintf("u%d", i%7)) })
		}
		wg.Wait()
		frames, err := s.Events(t.Context(), "m1", 0, 100)
		if err != nil || len(frames) != n {
			t.Fatalf("events: %d, %v; want %d", len(frames), err, n)
		}
		bySeq := make([]string, n+1) // order number of each seq
		for _, f := range frames {
			var d struct {
				Seq  uint64         `json:"seq"`
				Data wire.OrderData `json:"data"`
			}
			if err := json.Unmarshal([]byte(f), &d); err != nil || d.Seq < 1 || d.Seq > n || bySeq[d.Seq] != "" {
				t.Fatalf("event %s (%v)", f, err)
			}
			bySeq[d.Seq] = d.Data.Order.OrderNo
		}
		for seq := uint64(1); seq <= n; seq++ {
			if delivered, _, err := s.Ack(t.Context(), "m1", seq); err != nil || len(delivered) != 1 {
				t.Fatalf("ack %d delivered %d orders, %v; want 1", seq, len(delivered), err)
			}
			if o, err := s.GetOrder(t.Context(), bySeq[seq]); err != nil || o.DeliveredAt == nil {
				t.Fatalf("after ack %d the order of its event is %+v, %v; want delivered", seq, o, err)
			}
		}
	})
}

// Order numbers stay unique under concurrency even when every order falls
// in the same millisecond for the same user.
func TestOrderNoUniqueConcurrent(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		fixed := time.UnixMilli(1_700_000_000_000)
		s := open(t, url, store.Options{Now: func() time.Time { return fixed }})
		const n = 80
		var mu sync.Mutex
		seen := map[string]bool{}
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				o, _ := create(t, s, "m1", "u1")
				mu.Lock()
				defer mu.Unlock()
				if seen[o.OrderNo] || !wire.ValidOrderNo(o.OrderNo) {
					t.Errorf("order number %s repeated or malformed", o.OrderNo)
				}
				seen[o.OrderNo] = true
			})
		}
		wg.Wait()
		if len(seen) != n {
			t.Fatalf("%d distinct order numbers; want %d", len(seen), n)
		}
	})
}

func TestProcessIdempotent(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		s := open(t, url, store.Options{})
		o, _ := create(t, s, "m1", "u1")
		create(t, s, "m1", "u1")
		var wg sync.WaitGroup
		var mu sync.Mutex
		firsts := 0
		for range 8 {
			wg.Go(func() {
				p, ev, ok, err := s.ProcessOrder(t.Context(), o.OrderNo, frame(wire.EventOrderProcessed))
				if err != nil || p.Status != wire.StatusProcessed {
					t.Errorf("process: %+v, %v", p, err)
				}
				if ok {
					mu.Lock()
					firsts++
					mu.Unlock()
					if ev.Seq != 3 || ev.OrderSum != 1 {
						t.Errorf("event seq %d orderSum %d; want 3, 1", ev.Seq, ev.OrderSum)
					}
				}
			})
		}
		wg.Wait()
		if firsts != 1 {
			t.Fatalf("%d calls emitted an event; want 1", firsts)
		}
		m, _ := s.Merchant(t.Context(), "m1")
		if m.Seq != 3 || m.Pending != 1 {
			t.Fatalf("merchant %+v; want seq 3 pending 1", m)
		}
		if _, _, _, err := s.ProcessOrder(t.Context(), "u19999999999999999", frame("x")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("process unknown: %v; want ErrNotFound", err)
		}
	})
}

func TestListPaging(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		s := open(t, url, store.Options{})
		var all []string
		for i := range 7 {
			o, _ := create(t, s, "m1", "u1")
			all = append([]string{o.OrderNo}, all...) // newest first
			if i%2 == 0 {
				if _, _, _, err := s.ProcessOrder(t.Context(), o.OrderNo, frame("order.processed")); err != nil {
					t.Fatal(err)
				}
			}
		}
		create(t, s, "m2", "u1")
		var got []string
		before := ""
		for {
			page, next, err := s.ListOrders(t.Context(), store.ListQuery{MerchantID: "m1", Before: before, Limit: 3})
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range page {
				got = append(got, o.OrderNo)
			}
			if next == "" {
				break
			}
			before = next
		}
		if !slices.Equal(got, all) {
			t.Fatalf("paged %v; want %v", got, all)
		}
		pending, next, err := s.ListOrders(t.Context(), store.ListQuery{MerchantID: "m1", Status: "pending", Limit: 10})
		if err != nil || len(pending) != 3 || next != "" {
			t.Fatalf("pending: %d orders next %q %v; want 3", len(pending), next, err)
		}
		if _, _, err := s.ListOrders(t.Context(), store.ListQuery{MerchantID: "m2", Before: all[0], Limit: 3}); !errors.Is(err, store.ErrUnknownCursor) {
			t.Fatalf("foreign cursor: %v; want ErrUnknownCursor", err)
		}
	})
}

// A failure at any step inside the transaction leaves nothing behind.
func TestCreateAtomic(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		for _, step := range []string{"order", "merchant", "event", "commit"} {
			boom := errors.New("injected")
			s := open(t, url, store.Options{Fault: func(_ context.Context, _ *sqlx.Tx, at string) error {
				if at == step {
					return boom
				}
				return nil
			}})
			_, _, err := s.CreateOrder(t.Context(), store.NewOrder{MerchantID: "m1", UserID: "u1", Date: "2022-06-22"}, frame("order"))
			if !errors.Is(err, boom) {
				t.Fatalf("step %s: err %v; want injected", step, err)
			}
			m, _ := s.Merchant(t.Context(), "m1")
			page, _, _ := s.ListOrders(t.Context(), store.ListQuery{MerchantID: "m1", Limit: 10})
			frames, _ := s.Events(t.Context(), "m1", 0, 10)
			if m != (store.Merchant{}) || len(page) != 0 || len(frames) != 0 {
				t.Fatalf("step %s: left merchant %+v, %d orders, %d events", step, m, len(page), len(frames))
			}
			s.Close()
		}
	})
}

func TestRelayAndPrune(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		now := time.UnixMilli(1_700_000_000_000)
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		s := open(t, url, store.Options{Now: clock})
		for range 3 {
			create(t, s, "m1", "u1")
			create(t, s, "m2", "u1")
		}
		// m2's second event failed to publish: the relay must stop there.
		var got []store.EventKey
		pub := func(_ context.Context, evs []store.Event) int {
			for i, ev := range evs {
				if ev.MerchantID == "m2" && ev.Seq == 2 {
					return i
				}
				got = append(got, store.EventKey{MerchantID: ev.MerchantID, Seq: ev.Seq})
			}
			return len(evs)
		}
		n, err := s.Relay(t.Context(), now.UnixMilli(), 100, pub)
		if err != nil || n != 4 {
			t.Fatalf("relay: %d, %v; want 4", n, err)
		}
		slices.SortFunc(got, func(a, b store.EventKey) int {
			return cmpKey(a, b)
		})
		want := []store.EventKey{{"m1", 1}, {"m1", 2}, {"m1", 3}, {"m2", 1}}
		if !slices.Equal(got, want) {
			t.Fatalf("published %v; want %v", got, want)
		}
		// Rows newer than the cutoff wait for the fast path.
		if n, err := s.Relay(t.Context(), now.UnixMilli()-1, 100, pub); err != nil || n != 0 {
			t.Fatalf("relay before cutoff: %d, %v; want 0", n, err)
		}
		if err := s.MarkPublished(t.Context(), []store.EventKey{{"m2", 2}, {"m2", 3}}); err != nil {
			t.Fatal(err)
		}
		if n, err := s.Relay(t.Context(), now.UnixMilli(), 100, pub); err != nil || n != 0 {
			t.Fatalf("relay after marking: %d, %v; want 0", n, err)
		}
		mu.Lock()
		now = now.Add(time.Hour)
		mu.Unlock()
		create(t, s, "m1", "u1") // unpublished and new: kept
		pruned, err := s.Prune(t.Context(), now.UnixMilli())
		if err != nil || pruned != 6 {
			t.Fatalf("prune: %d, %v; want 6", pruned, err)
		}
		frames, _ := s.Events(t.Context(), "m1", 0, 10)
		if len(frames) != 1 {
			t.Fatalf("%d events left for m1; want 1", len(frames))
		}
	})
}

func cmpKey(a, b store.EventKey) int {
	if a.MerchantID != b.MerchantID {
		if a.MerchantID < b.MerchantID {
			return -1
		}
		return 1
	}
	return int(a.Seq) - int(b.Seq)
}

// While one relay holds a merchant's rows, a second relay (another replica)
// skips that merchant instead of publishing its rows twice or out of order,
// and relays the other merchants.
func TestRelaySkipsLockedMerchant(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	now := time.UnixMilli(1_700_000_000_000)
	a := open(t, url, store.Options{Now: func() time.Time { return now }})
	b := open(t, url, store.Options{Now: func() time.Time { return now }})
	for range 3 {
		create(t, a, "m1", "u1")
	}
	create(t, a, "m2", "u1")
	holding, release := make(chan struct{}), make(chan struct{})
	first := make(chan int)
	go func() {
		n, err := a.Relay(t.Context(), now.UnixMilli(), 100, func(_ context.Context, evs []store.Event) int {
			if evs[0].MerchantID == "m1" {
				close(holding)
				<-release
			}
			return len(evs)
		})
		if err != nil {
			t.Errorf("first relay: %v", err)
		}
		first <- n
	}()
	<-holding
	var second []store.EventKey
	n, err := b.Relay(t.Context(), now.UnixMilli(), 100, func(_ context.Context, evs []store.Event) int {
		for _, ev := range evs {
			second = append(second, store.EventKey{MerchantID: ev.MerchantID, Seq: ev.Seq})
		}
		return len(evs)
	})
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range second {
		if k.MerchantID == "m1" {
			t.Fatalf("second relay published %v while the first held m1", second)
		}
	}
	if got := n + <-first; got != 4 {
		t.Fatalf("relays published %d events in all; want 4", got)
	}
}

// Orders failing inside a shared SQLite commit are rolled back alone: the
// others of the same group are stored with contiguous seqs.
func TestFailingOrderInGroup(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		boom := errors.New("injected")
		lastID := "SELECT merchant_id FROM orders WHERE id = last_insert_rowid()"
		if strings.HasPrefix(url, "postgres") {
			lastID = "SELECT merchant_id FROM orders WHERE id = lastval()"
		}
		var current sync.Map // *sqlx.Tx -> merchant of the order being written in it
		s := open(t, url, store.Options{Fault: func(ctx context.Context, tx *sqlx.Tx, step string) error {
			switch step {
			case "order":
				var m string
				if err := tx.GetContext(ctx, &m, lastID); err != nil {
					return err
				}
				current.Store(tx, m)
			case "event":
				// Fail after the order, the merchant bump and the event row.
				if m, _ := current.Load(tx); m == "bad" {
					return boom
				}
			}
			return nil
		}})
		var wg sync.WaitGroup
		var failed, stored atomicCount
		for i := range 90 {
			m := []string{"good", "bad", "fine"}[i%3]
			wg.Go(func() {
				_, _, err := s.CreateOrder(t.Context(), store.NewOrder{MerchantID: m, UserID: "u1", Date: "2022-06-22"}, frame("order"))
				switch {
				case m == "bad" && errors.Is(err, boom):
					failed.add()
				case m != "bad" && err == nil:
					stored.add()
				default:
					t.Errorf("merchant %s: %v", m, err)
				}
			})
		}
		wg.Wait()
		if failed.get() != 30 || stored.get() != 60 {
			t.Fatalf("%d failed, %d stored; want 30, 60", failed.get(), stored.get())
		}
		txs := 0
		current.Range(func(any, any) bool { txs++; return true })
		t.Logf("90 orders in %d transactions", txs)
		if strings.HasPrefix(url, "sqlite") && txs >= 90 {
			t.Errorf("no two of 90 concurrent orders shared a SQLite commit")
		}
		for _, m := range []string{"good", "fine", "bad"} {
			want := uint64(30)
			if m == "bad" {
				want = 0
			}
			got, _ := s.Merchant(t.Context(), m)
			frames, _ := s.Events(t.Context(), m, 0, 100)
			page, _, _ := s.ListOrders(t.Context(), store.ListQuery{MerchantID: m, Limit: 100})
			if got.Seq != want || got.Pending != int64(want) || len(frames) != int(want) || len(page) != int(want) {
				t.Errorf("merchant %s: %+v, %d events, %d orders; want %d each", m, got, len(frames), len(page), want)
			}
		}
	})
}

type atomicCount struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCount) add() { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *atomicCount) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// An order whose frame cannot be built fails alone without a Fault hook:
// on PostgreSQL this is the pipelined group (pgGroup) rolling back and
// writing the group again under savepoints.
func TestFailingFrameInGroup(t *testing.T) {
	each(t, func(t *testing.T, url string) {
		boom := errors.New("injected frame failure")
		good := frame("order")
		frameFor := func(o wire.Order, seq uint64, sum int64, ts time.Time) ([]byte, error) {
			if o.MerchantID == "bad" {
				return nil, boom
			}
			return good(o, seq, sum, ts)
		}
		s := open(t, url, store.Options{})
		var wg sync.WaitGroup
		var failed, stored atomicCount
		for i := range 90 {
			m := []string{"good", "bad", "fine"}[i%3]
			wg.Go(func() {
				_, ev, err := s.CreateOrder(t.Context(), store.NewOrder{MerchantID: m, UserID: "u1", Date: "2022-06-22"}, frameFor)
				switch {
				case m == "bad" && errors.Is(err, boom):
					failed.add()
				case m != "bad" && err == nil && ev.Seq >= 1 && ev.Seq <= 30:
					stored.add()
				default:
					t.Errorf("merchant %s: seq %d, %v", m, ev.Seq, err)
				}
			})
		}
		wg.Wait()
		if failed.get() != 30 || stored.get() != 60 {
			t.Fatalf("%d failed, %d stored; want 30, 60", failed.get(), stored.get())
		}
		for _, m := range []string{"good", "fine", "bad"} {
			want := uint64(30)
			if m == "bad" {
				want = 0
			}
			got, _ := s.Merchant(t.Context(), m)
			frames, _ := s.Events(t.Context(), m, 0, 100)
			page, _, _ := s.ListOrders(t.Context(), store.ListQuery{MerchantID: m, Limit: 100})
			if got.Seq != want || got.Pending != int64(want) || len(frames) != int(want) || len(page) != int(want) {
				t.Errorf("merchant %s: %+v, %d events, %d orders; want %d each", m, got, len(frames), len(page), want)
			}
		}
	})
}
