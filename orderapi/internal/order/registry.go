package order

import (
	"context"
	"time"

	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// Registration is the body of PUT /merchants/{id}.
type Registration struct {
	MerchantID   string    `json:"merchantId"`
	RegisteredAt time.Time `json:"-"`
	Created      bool      `json:"-"`
}

// MarshalJSON writes registeredAt like the order's timestamps.
func (r Registration) MarshalJSON() ([]byte, error) {
	return []byte(`{"merchantId":"` + r.MerchantID + `","registeredAt":"` +
		r.RegisteredAt.UTC().Format(wire.TimeLayout) + `"}`), nil
}

// Register adds a merchant to the registry (PUT /merchants/{id}, service
// token, no body). Created reports a new registration (201) rather than an
// existing one (200).
func (s *Service) Register(ctx context.Context, c Caller, merchantID string, body []byte) (Registration, error) {
	if c.Role != token.RoleService {
		return Registration{}, forbidden("only a service token may register merchants")
	}
	if !wire.ValidMerchantID(merchantID) {
		return Registration{}, invalidField("id", "merchant id must be 1-64 characters of A-Z a-z 0-9 _ -")
	}
	if len(body) > 0 {
		return Registration{}, invalidJSON("this request takes no body")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	created, at, err := s.d.Store.RegisterMerchant(ctx, merchantID)
	if err != nil {
		return Registration{}, unavailable("database", err)
	}
	s.registered.Store(merchantID, struct{}{})
	return Registration{MerchantID: merchantID, RegisteredAt: at, Created: created}, nil
}

// takesOrders checks that merchantID may receive orders: any merchant with
// MERCHANTS=open, only registered ones with MERCHANTS=registered (others
// are not_found, as if they did not exist).
func (s *Service) takesOrders(ctx context.Context, merchantID string) error {
	if !s.d.RegisteredOnly {
		return nil
	}
	if _, ok := s.registered.Load(merchantID); ok {
		return nil
	}
	ok, err := s.d.Store.MerchantRegistered(ctx, merchantID)
	if err != nil {
		return unavailable("database", err)
	}
	if !ok {
		return notFound("no merchant %s: it is not registered", merchantID)
	}
	s.registered.Store(merchantID, struct{}{})
	return nil
}
