package attention

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"orderpush/orderapi/internal/store"
	"orderpush/pkg/logging"
	"orderpush/pkg/presence"
	"orderpush/pkg/wire"
)

// Deps are a Scheduler's collaborators.
type Deps struct {
	Store    *store.Store
	Presence *presence.Registry
	Metrics  *Metrics
	Logger   *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// placedQueue bounds the orders waiting for their presence check. When it
// is full an order is not checked: its undelivered alert still fires, at
// UNDELIVERED_AFTER instead of at once.
const placedQueue = 4096

// maxSweep bounds the alerts one round deletes as received.
const maxSweep = 1000

// Scheduler sends one replica's share of the due alerts.
type Scheduler struct {
	cfg    Config
	d      Deps
	log    *slog.Logger
	client *http.Client
	placed chan wire.Order // to watchPresence; never closed
	wake   chan struct{}   // buffered 1: a round is wanted now
	slots  chan struct{}   // one token per attempt in flight
	sends  sync.WaitGroup  // attempts in flight
}

// New returns a Scheduler for a configured webhook (cfg.On()).
func New(cfg Config, d Deps) (*Scheduler, error) {
	if !cfg.On() {
		return nil, errors.New("attention: no webhook URL")
	}
	if err := CheckSecret(cfg.Secret); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{
		cfg: cfg, d: d, log: d.Logger, client: newClient(cfg.Workers),
		placed: make(chan wire.Order, placedQueue),
		wake:   make(chan struct{}, 1),
		slots:  make(chan struct{}, cfg.Workers),
	}, nil
}

// Schedule is the store schedule matching the configuration: what
// store.Options.Alerts must be for the orders this Scheduler sends.
func (c Config) Schedule() store.AlertSchedule {
	c = c.withDefaults()
	return store.AlertSchedule{Undelivered: c.UndeliveredAfter, Unseen: c.UnseenAfter}
}

// Placed tells the scheduler an order committed. It never blocks: the
// presence check happens on the scheduler's goroutine.
func (s *Scheduler) Placed(o wire.Order) {
	select {
	case s.placed <- o:
	default:
		s.log.Warn("attention: presence check queue full; the undelivered alert fires at its time",
			logging.KeyOrderNo, o.OrderNo)
	}
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run sends due alerts until ctx ends. Then it abandons the attempts in
// flight, hands their alerts back (due at once, for another replica or the
// next start) and returns after every goroutine it started ended.
func (s *Scheduler) Run(ctx context.Context) error {
	s.log.Info("attention webhook on", "url", s.cfg.URL.Redacted(),
		"undeliveredAfter", s.cfg.UndeliveredAfter, "unseenAfter", s.cfg.UnseenAfter)
	var wg sync.WaitGroup
	wg.Go(func() { s.watchPresence(ctx) })
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	lastGauge := time.Time{}
	for {
		if time.Since(lastGauge) >= 5*time.Second {
			s.updatePending(ctx)
			lastGauge = time.Now()
		}
		s.round(ctx)
		select {
		case <-ctx.Done():
			s.sends.Wait()
			wg.Wait()
			return nil
		case <-tick.C:
		case <-s.wake:
		}
	}
}

func (s *Scheduler) updatePending(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := s.d.Store.AlertsPending(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("attention: count pending alerts", logging.Err(err))
		}
		return
	}
	s.d.Metrics.Pending.Set(float64(n))
}

// round deletes received alerts and claims as many due ones as there are
// free workers, starting an attempt for each.
func (s *Scheduler) round(ctx context.Context) {
	free := s.cfg.Workers - len(s.slots)
	if free <= 0 || ctx.Err() != nil {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	now := s.d.Now()
	if _, err := s.d.Store.CancelReceived(dctx, now, maxSweep); err != nil {
		s.dbError("delete received alerts", err)
		return
	}
	token := newToken()
	alerts, err := s.d.Store.ClaimAlerts(dctx, now, s.cfg.Lease, token, free)
	if err != nil {
		s.dbError("claim alerts", err)
		return
	}
	for _, a := range alerts {
		s.slots <- struct{}{} // never blocks: at most free claimed
		s.sends.Go(func() {
			defer func() { <-s.slots; s.poke() }()
			s.attempt(ctx, a, token)
		})
	}
}

func (s *Scheduler) dbError(what string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	s.log.Warn("attention: "+what, logging.Err(err))
}

// attempt sends one claimed alert and records the outcome.
func (s *Scheduler) attempt(ctx context.Context, a store.Alert, token string) {
	online := s.online(ctx, a.MerchantID)
	outcome, status, err := s.post(ctx, newEvent(a, online))
	// The outcome is recorded even while stopping: it happened.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	now := s.d.Now()
	log := s.log.With(logging.KeyOrderNo, a.OrderNo, "type", a.Type, "attempt", a.Attempts+1)
	var kept bool
	switch {
	case errors.Is(err, errCanceled):
		kept, err = s.d.Store.ReleaseAlert(rctx, a, token, now)
		if err == nil && kept {
			log.Debug("attention: attempt abandoned at shutdown; alert handed back")
		}
	case outcome == OutcomeOK:
		s.d.Metrics.Attempts.WithLabelValues(a.Type, outcome).Inc()
		kept, err = s.d.Store.AlertDone(rctx, a, token, now)
		if err == nil {
			log.Info("attention: webhook delivered", "status", status)
		}
	default:
		s.d.Metrics.Attempts.WithLabelValues(a.Type, outcome).Inc()
		next := now.Add(Backoff(a.Attempts+1, nil))
		giveUp := next.Sub(time.UnixMilli(a.FiredMS)) > RetryFor
		if giveUp {
			next = time.Time{}
		}
		kept, err = s.d.Store.AlertRetry(rctx, a, token, next)
		attrs := []any{"outcome", outcome, "status", status}
		if err != nil {
			attrs = append(attrs, logging.Err(err))
		}
		if giveUp {
			log.Error("attention: webhook failed for 24 h; giving up", attrs...)
		} else {
			log.Warn("attention: webhook attempt failed; retrying", append(attrs, "next", next)...)
		}
	}
	switch {
	case err != nil:
		s.dbError("record attempt", err)
	case !kept:
		// Our lease ran out and another replica took the alert over: it
		// records its own attempts.
		log.Warn("attention: lease lost before the attempt was recorded")
	}
}

// online counts the merchant's sockets for the body; without Redis it is
// 0 rather than no alert.
func (s *Scheduler) online(ctx context.Context, merchantID string) int {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	n, err := s.d.Presence.Online(ctx, merchantID)
	if err != nil {
		s.log.Warn("attention: presence", logging.KeyMerchant, merchantID, logging.Err(err))
		return 0
	}
	return n
}

// watchPresence makes the undelivered alert of an order due at once when
// its merchant had no socket online as it committed. Orders queued
// together are checked together: one presence read per merchant and one
// database write for the batch.
func (s *Scheduler) watchPresence(ctx context.Context) {
	for {
		var batch []wire.Order
		select {
		case <-ctx.Done():
			return
		case o := <-s.placed:
			batch = append(batch, o)
		}
	drain:
		for len(batch) < 256 {
			select {
			case o := <-s.placed:
				batch = append(batch, o)
			default:
				break drain
			}
		}
		s.checkPresence(ctx, batch)
	}
}

func (s *Scheduler) checkPresence(ctx context.Context, batch []wire.Order) {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	online := map[string]int{}
	var offline []string
	for _, o := range batch {
		n, ok := online[o.MerchantID]
		if !ok {
			var err error
			if n, err = s.d.Presence.Online(pctx, o.MerchantID); err != nil {
				// Unknown: leave the alert at UNDELIVERED_AFTER rather than
				// alert about every order while Redis is away.
				s.log.Warn("attention: presence unknown; undelivered alerts at their time",
					logging.KeyMerchant, o.MerchantID, logging.Err(err))
				n = 1
			}
			online[o.MerchantID] = n
		}
		if n == 0 {
			offline = append(offline, o.OrderNo)
		}
	}
	if len(offline) == 0 {
		return
	}
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	defer dcancel()
	if err := s.d.Store.ExpediteUndelivered(dctx, s.d.Now(), offline); err != nil {
		s.dbError("expedite undelivered alerts", err)
		return
	}
	s.poke()
}

func newToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
