package order

import (
	"context"

	"orderpush/pkg/wire"
)

// Alerts returns the attention alerts that fired for an order (PROTOCOL.md
// "Receipts and attention"): never nil while the webhook is on, and nil
// (no "alerts" field) while it is off. The caller has already been
// authorised for the order (Get).
func (s *Service) Alerts(ctx context.Context, orderNo string) ([]wire.Alert, error) {
	if !s.d.AlertsOn {
		return nil, nil
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	alerts, err := s.d.Store.OrderAlerts(ctx, orderNo)
	if err != nil {
		return nil, unavailable("database", err)
	}
	if alerts == nil {
		alerts = []wire.Alert{}
	}
	return alerts, nil
}
