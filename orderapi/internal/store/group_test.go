package store_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"orderpush/orderapi/internal/store"
	"orderpush/pkg/poll"
)

// CreateOrder returns only after its event went through the OnCommit
// function, and a group's events go through it together, each merchant's
// in seq order.
func TestOnCommitBeforeAnswer(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, url string) {
		s := open(t, url, store.Options{})
		var (
			mu        sync.Mutex
			published []store.Event
		)
		s.OnCommit(func(_ context.Context, evs []store.Event) {
			mu.Lock()
			defer mu.Unlock()
			for i, ev := range evs {
				if i > 0 && evs[i-1].MerchantID == ev.MerchantID && evs[i-1].Seq >= ev.Seq {
					t.Errorf("%s seq %d after %d in one publish", ev.MerchantID, ev.Seq, evs[i-1].Seq)
				}
			}
			published = append(published, evs...)
		})
		var wg sync.WaitGroup
		for i := range 40 {
			m := []string{"m1", "m2", "m3"}[i%3]
			wg.Go(func() {
				_, ev := create(t, s, m, "u1")
				mu.Lock()
				defer mu.Unlock()
				if !slices.Contains(published, ev) {
					t.Errorf("%s seq %d answered before its publish", ev.MerchantID, ev.Seq)
				}
			})
		}
		wg.Wait()
		if len(published) != 40 {
			t.Fatalf("%d events published for 40 orders", len(published))
		}
	})
}

// A publish that hangs (a slow Redis) does not hold the writer: orders keep
// committing while it waits, and are answered after it returns.
func TestSlowPublishDoesNotHoldCommits(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, url string) {
		s := open(t, url, store.Options{})
		release := make(chan struct{})
		var once sync.Once
		s.OnCommit(func(context.Context, []store.Event) {
			once.Do(func() { <-release }) // only the first publish hangs
		})
		done := make(chan struct{}, 3)
		for _, m := range []string{"m1", "m2", "m3"} {
			go func() {
				create(t, s, m, "u1")
				done <- struct{}{}
			}()
		}
		poll.TrueWithin(t, 10*time.Second, "all three orders committed", func() bool {
			n := 0
			for _, m := range []string{"m1", "m2", "m3"} {
				mc, err := s.Merchant(t.Context(), m)
				if err != nil {
					t.Fatal(err)
				}
				n += int(mc.Seq)
			}
			return n == 3
		})
		// The later groups queue behind the hanging publish: nobody is
		// answered before their own group's publish.
		if n := len(done); n != 0 {
			t.Fatalf("%d orders answered while the first publish hung", n)
		}
		close(release)
		for range 3 {
			<-done
		}
	})
}
