package order

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"orderpush/orderapi/internal/store"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// ParseAck parses a POST /merchants/{id}/ack body: exactly {"seq":N} with N
// a non-negative JSON integer.
func ParseAck(body []byte) (uint64, error) {
	fields, err := decodeObject(body, "seq")
	if err != nil {
		return 0, err
	}
	return seqField(fields)
}

// seqField reads the required "seq": a non-negative JSON integer up to
// wire.MaxAckSeq in plain digits.
func seqField(fields members) (uint64, error) {
	raw, ok := fields.get("seq")
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

// ParseReceipts parses a POST /receipts body: {"acks":[{"merchantId","seq"}],
// "seen":[{"merchantId","orderNo"}]}, both lists optional, at most
// wire.MaxReceiptItems items together, each as strict as the single
// endpoints' bodies. Errors name the item, as in "seen[3].orderNo".
func ParseReceipts(body []byte) (wire.ReceiptBatch, error) {
	fields, err := decodeObject(body, "acks", "seen")
	if err != nil {
		return wire.ReceiptBatch{}, err
	}
	acks, err := itemList(fields, "acks")
	if err != nil {
		return wire.ReceiptBatch{}, err
	}
	seen, err := itemList(fields, "seen")
	if err != nil {
		return wire.ReceiptBatch{}, err
	}
	if n := len(acks) + len(seen); n > wire.MaxReceiptItems {
		return wire.ReceiptBatch{}, invalidField("acks", "acks and seen hold at most %d items together, got %d; send several batches", wire.MaxReceiptItems, n)
	}
	var b wire.ReceiptBatch
	if b.Acks, err = parseItems(acks, "acks", "seq", func(m string, f members) (wire.AckReceipt, error) {
		seq, err := seqField(f)
		return wire.AckReceipt{MerchantID: m, Seq: seq}, err
	}); err != nil {
		return wire.ReceiptBatch{}, err
	}
	if b.Seen, err = parseItems(seen, "seen", "orderNo", func(m string, f members) (wire.SeenReceipt, error) {
		no, err := requiredString(f, "orderNo")
		if err == nil && !wire.ValidOrderNo(no) {
			err = invalidField("orderNo", "malformed order number")
		}
		return wire.SeenReceipt{MerchantID: m, OrderNo: no}, err
	}); err != nil {
		return wire.ReceiptBatch{}, err
	}
	return b, nil
}

// parseItems parses each raw item of the list name: an object of exactly
// "merchantId" and field, read by parse. Errors name the item.
func parseItems[T any](raw []json.RawMessage, name, field string, parse func(merchant string, f members) (T, error)) ([]T, error) {
	var out []T
	for i, r := range raw {
		v, err := parseItem(r, field, parse)
		if err != nil {
			return nil, within(fmt.Sprintf("%s[%d]", name, i), err)
		}
		out = append(out, v)
	}
	return out, nil
}

func parseItem[T any](raw json.RawMessage, field string, parse func(string, members) (T, error)) (T, error) {
	var zero T
	f, err := decodeObject(raw, "merchantId", field)
	if err != nil {
		return zero, err
	}
	m, err := merchantField(f)
	if err != nil {
		return zero, err
	}
	return parse(m, f)
}

// itemList reads the optional JSON array name as its raw items.
func itemList(fields members, name string) ([]json.RawMessage, error) {
	raw, ok := fields.get(name)
	if !ok {
		return nil, nil
	}
	var items []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return nil, invalidField(name, "must be a JSON array")
	}
	return items, nil
}

func merchantField(f members) (string, error) {
	m, err := requiredString(f, "merchantId")
	if err != nil {
		return "", err
	}
	if !wire.ValidMerchantID(m) {
		return "", invalidField("merchantId", "must be 1-64 characters of A-Z a-z 0-9 _ -")
	}
	return m, nil
}

// within names the item of a batch an error is about.
func within(item string, err error) error {
	e, ok := AsError(err)
	if !ok {
		return err
	}
	c := *e
	c.Message = item + "." + e.Message
	if e.Code != wire.CodeInvalidField {
		c.Message = item + ": " + e.Message
	}
	return &c
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
	s.observe(placed, nil)
	return nil
}

func seenFrame(o wire.Order, seq uint64, sum int64, ts time.Time) ([]byte, error) {
	return wire.Encode(wire.EventOrderSeen, seq, ts.UnixMilli(), wire.OrderData{OrderSum: sum, Order: o})
}

// Seen records that a person looked at an order (POST /orders/{orderNo}/seen,
// the order's merchant or a service). The first call sets seenAt and
// returns the order.seen event to publish; later calls return the order
// and no event.
func (s *Service) Seen(ctx context.Context, c Caller, orderNo string) (wire.Order, error) {
	if _, err := s.ownedOrder(ctx, c, orderNo, "mark it seen"); err != nil {
		return wire.Order{}, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	o, _, changed, err := s.d.Store.Seen(ctx, orderNo, seenFrame)
	if errors.Is(err, store.ErrNotFound) {
		return wire.Order{}, noOrder(orderNo)
	}
	if err != nil {
		return wire.Order{}, unavailable("database", err)
	}
	if changed {
		s.observe(nil, []wire.Order{o})
	}
	return o, nil
}

// Receipts applies a gateway's batch of receipts (POST /receipts, service
// tokens only) in one transaction, as Ack and Seen would one by one: an
// ack above its merchant's seq and a seen of an order that is not the
// named merchant's (or of no order) are skipped and counted. It returns
// the counts once the order.seen events are published (or left to the
// outbox relay, store.OnCommit).
func (s *Service) Receipts(ctx context.Context, c Caller, body []byte) (wire.ReceiptResult, error) {
	if c.Role != token.RoleService {
		return wire.ReceiptResult{}, forbidden("only a service may send receipts in batches")
	}
	b, err := ParseReceipts(body)
	if err != nil {
		return wire.ReceiptResult{}, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	r, err := s.d.Store.ApplyReceipts(ctx, b.Acks, b.Seen, seenFrame)
	if err != nil {
		return wire.ReceiptResult{}, unavailable("database", err)
	}
	s.observe(r.Delivered, r.FirstSeen)
	return wire.ReceiptResult{
		Acks: wire.ReceiptCounts{Applied: len(b.Acks) - r.AcksSkipped, Skipped: r.AcksSkipped},
		Seen: wire.ReceiptCounts{Applied: r.SeenApplied, Skipped: r.SeenSkipped},
	}, nil
}

// observe feeds the receipt histograms: placed to delivered for the orders
// an ack delivered, placed to seen for the orders seen the first time.
func (s *Service) observe(delivered []time.Time, seen []wire.Order) {
	now := time.Now()
	for _, p := range delivered {
		s.d.Metrics.OrderDelivered.Observe(now.Sub(p).Seconds())
	}
	for _, o := range seen {
		s.d.Metrics.OrderSeen.Observe(o.SeenAt.Sub(o.CreatedAt).Seconds())
	}
}
