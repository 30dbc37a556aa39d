package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// RegisterMerchant adds id to the merchant registry. created is false when
// it was registered already (nothing changes then); registeredAt is the
// time of the first registration either way.
func (s *Store) RegisterMerchant(ctx context.Context, id string) (created bool, registeredAt time.Time, err error) {
	now := s.now()
	var ms int64
	err = s.w.GetContext(ctx, &ms, s.q.registerMerchant, id, now.UnixMilli())
	switch {
	case err == nil:
		return true, now, nil
	case !errors.Is(err, sql.ErrNoRows):
		return false, time.Time{}, fmt.Errorf("register merchant %s: %w", id, err)
	}
	// ON CONFLICT DO NOTHING returned no row: it exists.
	if err := s.w.GetContext(ctx, &ms, s.q.registeredMerchant, id); err != nil {
		return false, time.Time{}, fmt.Errorf("registered merchant %s: %w", id, err)
	}
	return false, time.UnixMilli(ms).UTC(), nil
}

// MerchantRegistered reports whether id is in the merchant registry.
func (s *Store) MerchantRegistered(ctx context.Context, id string) (bool, error) {
	var ms int64
	err := s.r.GetContext(ctx, &ms, s.q.registeredMerchant, id)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("registered merchant %s: %w", id, err)
	}
	return true, nil
}
