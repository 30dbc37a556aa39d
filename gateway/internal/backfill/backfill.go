// Package backfill finds a merchant's missed events and current state for the
// gateway: Redis first (history, state), then the order API's event log and
// summary for what Redis no longer holds (trimmed, expired, or Redis restarted
// empty). It is the one place that decides which source answers: the hub
// asks for a state (State, Newer) or a run of events (Range) and never
// chooses between Redis and the order API itself. ARCHITECTURE.md "How an order travels" 5, 6 and 9.
//
// A Source is safe for concurrent use.
package backfill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/orderapi"
	"orderpush/pkg/logging"
	"orderpush/pkg/stream"
)

// API is the part of the order API client a Source uses.
type API interface {
	Summary(ctx context.Context, merchantID string) (stream.State, error)
	Events(ctx context.Context, merchantID string, after uint64, limit int) ([]stream.Event, error)
}

// Source reads state and missed events.
type Source struct {
	store *stream.Store
	api   API // nil when ORDERAPI_URL is unset
	log   *slog.Logger
	m     *metrics.Metrics
}

// New returns a Source. api may be nil: then only Redis is asked.
func New(store *stream.Store, api API, log *slog.Logger, m *metrics.Metrics) *Source {
	return &Source{store: store, api: api, log: log, m: m}
}

// State returns the merchant's newest seq and orderSum: from Redis, else
// from the order API (and then written back to Redis so the next reader
// finds it). A merchant nobody knows has the zero state.
func (s *Source) State(ctx context.Context, merchantID string) (stream.State, error) {
	st, err := s.store.State(ctx, merchantID)
	switch {
	case err == nil:
		return st, nil
	case !errors.Is(err, stream.ErrNoState):
		if s.api == nil {
			return stream.State{}, err
		}
		// Redis is failing; the order API may still answer.
		s.log.LogAttrs(ctx, slog.LevelWarn, "redis state read failed, asking the order api",
			slog.String(logging.KeyMerchant, merchantID), logging.Err(err))
	case s.api == nil:
		return stream.State{}, nil
	}
	return s.apiState(ctx, merchantID)
}

// Newer returns the merchant's state when a source knows one newer than
// have, the state a joining socket would otherwise be told (its topic's).
// Redis is read unless readRedis is false (the topic was created by this
// join and its state read just now). The order API is asked only when the
// client's since (NoSince: none) claims more than have and Redis: Redis
// may have lost the newest state, and only the authority may turn that
// claim into resync. ok is false when no source answered with a newer
// state; failures count as no answer (the topic's state stands).
func (s *Source) Newer(ctx context.Context, merchantID string, have uint64, since int64, readRedis bool) (st stream.State, ok bool) {
	if readRedis {
		if r, err := s.store.State(ctx, merchantID); err == nil {
			st, ok = r, true
		}
	}
	cur := have
	if ok {
		cur = max(cur, st.Seq)
	}
	if since >= 0 && uint64(since) > cur && s.api != nil {
		if a, err := s.apiState(ctx, merchantID); err == nil && a.Seq > cur {
			st, ok = a, true
		}
	}
	return st, ok
}

// apiState asks the order API only, and raises Redis's state to the answer.
func (s *Source) apiState(ctx context.Context, merchantID string) (stream.State, error) {
	if s.api == nil {
		return stream.State{}, errors.New("no order api configured")
	}
	st, err := s.api.Summary(ctx, merchantID)
	if err != nil {
		s.m.OrderAPIErrors.Inc()
		return stream.State{}, err
	}
	if err := s.store.SetState(ctx, merchantID, st); err != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "could not write state back to redis",
			slog.String(logging.KeyMerchant, merchantID), logging.Err(err))
	}
	return st, nil
}

// Range is a run of consecutive events and where they came from.
type Range struct {
	Events      []stream.Event // seqs after+1, after+2, ... with no hole
	FromHistory int
	FromLog     int
}

// Last is the seq of the last event, or after when there is none.
func (r Range) Last(after uint64) uint64 {
	if len(r.Events) == 0 {
		return after
	}
	return r.Events[len(r.Events)-1].Seq
}

// Range returns the events after < seq <= upto that can be found, as one
// consecutive run starting at after+1: from Redis history where it has them,
// from the order API's event log for the holes. It stops at the first seq
// neither holds. The error is non-nil only when a source failed (the run may
// then be shorter than what exists, and a retry may do better); a seq that
// simply is not there is not an error.
func (s *Source) Range(ctx context.Context, merchantID string, after, upto uint64) (Range, error) {
	var r Range
	if upto <= after {
		return r, nil
	}
	hist, herr := s.store.History(ctx, merchantID, after, upto)
	if herr != nil {
		hist = nil
	}
	cur, i := after, 0
	for cur < upto {
		for i < len(hist) && hist[i].Seq <= cur {
			i++
		}
		if i < len(hist) && hist[i].Seq == cur+1 {
			r.Events = append(r.Events, hist[i])
			r.FromHistory++
			cur++
			i++
			continue
		}
		if s.api == nil {
			break
		}
		stop := upto
		if i < len(hist) {
			stop = hist[i].Seq - 1
		}
		page, err := s.api.Events(ctx, merchantID, cur, int(min(stop-cur, orderapi.MaxEventsPage)))
		if err != nil {
			s.m.OrderAPIErrors.Inc()
			return r, fmt.Errorf("event log: %w", err)
		}
		n := 0
		for _, ev := range page {
			if ev.Seq != cur+1 || ev.Seq > stop {
				break
			}
			r.Events = append(r.Events, ev)
			cur++
			n++
		}
		r.FromLog += n
		if n == 0 {
			break // the log does not hold cur+1 either
		}
	}
	if cur < upto && herr != nil {
		return r, fmt.Errorf("history: %w", herr)
	}
	return r, nil
}
