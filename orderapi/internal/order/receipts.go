package order

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"orderpush/orderapi/internal/store"
	"orderpush/pkg/wire"
)

// ParseAck parses a POST /merchants/{id}/ack body: exactly {"seq":N} with N
// a non-negative JSON integer.
func ParseAck(body []byte) (uint64, error) {
	fields, err := decodeObject(body, "seq")
	if err != nil {
		return 0, err
	}
	raw, ok := fields["seq"]
	if !ok {
		return 0, invalidField("seq", "required")
	}
	var n json.Number
	if len(raw) == 0 || raw[0] < '0' || raw[0] > '9' || json.Unmarshal(raw, &n) != nil {
		return 0, invalidField("seq", "must be a non-negative integer")
	}
	v, err := strconv.ParseUint(string(n), 10, 64)
	if err != nil || v > wire.MaxAckSeq || (len(n) > 1 && n[0] == '0') {
		return 0, invalidField("seq", "must be an integer from 0 to %d, got %s", uint64(wire.MaxAckSeq), clip(string(raw)))
	}
	return v, nil
}

// Ack records a merchant's cumulative ack (POST /merchants/{id}/ack, that
// merchant or a service): every order whose event seq is at or below seq
// gets deliveredAt, once. A seq above the merchant's current seq is
// invalid_field.
func (s *Service) Ack(ctx context.Context, c Caller, merchantID string, body []byte) error {
	if err := merchantScope(c, merchantID); err != nil {
		return err
	}
	seq, err := ParseAck(body)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	placed, current, err := s.d.Store.Ack(ctx, merchantID, seq)
	if errors.Is(err, store.ErrSeqAhead) {
		return invalidField("seq", "%d is above the merchant's current seq %d", seq, current)
	}
	if err != nil {
		return unavailable("database", err)
	}
	now := time.Now()
	for _, p := range placed {
		s.d.Metrics.OrderDelivered.Observe(now.Sub(p).Seconds())
	}
	return nil
}

func seenFrame(o wire.Order, seq uint64, sum int64, ts time.Time) ([]byte, error) {
	return wire.Encode(wire.EventOrderSeen, seq, ts.UnixMilli(), wire.OrderData{OrderSum: sum, Order: o})
}

// Seen records that a person looked at an order (POST /orders/{orderNo}/seen,
// the order's merchant or a service). The first call sets seenAt and
// returns the order.seen event to publish; later calls return the order
// and no event.
func (s *Service) Seen(ctx context.Context, c Caller, orderNo string) (wire.Order, *store.Event, error) {
	if _, err := s.ownedOrder(ctx, c, orderNo, "mark it seen"); err != nil {
		return wire.Order{}, nil, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	o, ev, changed, err := s.d.Store.Seen(ctx, orderNo, seenFrame)
	if errors.Is(err, store.ErrNotFound) {
		return wire.Order{}, nil, noOrder(orderNo)
	}
	if err != nil {
		return wire.Order{}, nil, unavailable("database", err)
	}
	if !changed {
		return o, nil, nil
	}
	s.d.Metrics.OrderSeen.Observe(o.SeenAt.Sub(o.CreatedAt).Seconds())
	return o, &ev, nil
}
