// Package order is the order API's behaviour without HTTP: who may do what
// (PROTOCOL.md "Identities and tokens" and the order API table), input
// validation, and the calls into the store and Redis presence.
//
// Every method checks, in this order: the caller's role (403), the shape of
// the input (400), ownership of the data (403), existence (404). Client
// errors are *Error; a failing database or Redis is an *Error with code
// unavailable. A Service is safe for concurrent use.
package order

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"orderpush/orderapi/internal/metrics"
	"orderpush/orderapi/internal/ratelimit"
	"orderpush/orderapi/internal/store"
	"orderpush/pkg/logging"
	"orderpush/pkg/presence"
	"orderpush/pkg/stream/publish"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// Caller is who makes a request, from a verified token.
type Caller struct {
	Role    string
	Subject string
}

// Deps are the Service's collaborators.
type Deps struct {
	Store    *store.Store
	Presence *presence.Registry
	Streams  *publish.Publisher
	Metrics  *metrics.Metrics
	Logger   *slog.Logger
	// OrderRate limits POST /orders per member (ORDER_RATE); nil: off.
	OrderRate *ratelimit.Limiter
	// RegisteredOnly is MERCHANTS=registered: only merchants in the
	// registry take orders.
	RegisteredOnly bool
	// Timeout bounds each database or Redis call, so a dependency that
	// hangs gives 503 rather than a hung request [5s].
	Timeout time.Duration
	// Placed, when set, is told about every committed order (the
	// attention webhook's presence check); it must not block.
	Placed func(wire.Order)
	// AlertsOn: the attention webhook is configured, so an order read
	// with GET /orders/{orderNo} shows its alerts.
	AlertsOn bool
}

// Service implements the order API.
type Service struct {
	d Deps
	// registered caches merchants known to be registered. Registration is
	// permanent, so a positive answer never goes stale; the cache is
	// bounded by the registry, which only a service token can grow.
	registered sync.Map // merchant id -> struct{}
}

// New returns a Service.
func New(d Deps) *Service {
	if d.Timeout <= 0 {
		d.Timeout = 5 * time.Second
	}
	return &Service{d: d}
}

func (s *Service) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.d.Timeout)
}

func orderFrame(o wire.Order, seq uint64, sum int64, ts time.Time) ([]byte, error) {
	return wire.Encode(wire.EventOrder, seq, ts.UnixMilli(), wire.OrderData{OrderSum: sum, Msg: wire.NewOrderMsg, Order: o})
}

func processedFrame(o wire.Order, seq uint64, sum int64, ts time.Time) ([]byte, error) {
	return wire.Encode(wire.EventOrderProcessed, seq, ts.UnixMilli(), wire.OrderData{OrderSum: sum, Order: o})
}

// Create places an order from a POST /orders body. It returns once the
// order is committed and its event published (or, on failure, left to the
// outbox relay): the store's group commit publishes (store.OnCommit).
func (s *Service) Create(ctx context.Context, c Caller, body []byte) (wire.Order, error) {
	if c.Role != token.RoleMember && c.Role != token.RoleService {
		return wire.Order{}, forbidden("only member and service tokens may place orders")
	}
	// Before any other work, so a flood costs one Redis call per request.
	if c.Role == token.RoleMember {
		if ok, wait := s.d.OrderRate.Allow(ctx, c.Subject); !ok {
			return wire.Order{}, &Error{Code: wire.CodeRateLimited, RetryAfter: wait,
				Message: "too many orders from this member (ORDER_RATE); retry after the Retry-After seconds"}
		}
	}
	req, err := ParseCreate(body)
	if err != nil {
		return wire.Order{}, err
	}
	userID := req.UserID
	switch {
	case c.Role == token.RoleMember && req.HasUserID:
		return wire.Order{}, invalidField("userId", "must not be set with a member token (the token's user places the order)")
	case c.Role == token.RoleMember:
		userID = c.Subject
	case !req.HasUserID:
		return wire.Order{}, invalidField("userId", "required with a service token")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.takesOrders(ctx, req.MerchantID); err != nil {
		return wire.Order{}, err
	}
	o, _, err := s.d.Store.CreateOrder(ctx, store.NewOrder{
		MerchantID: req.MerchantID, UserID: userID, Date: req.Date, Price: req.Price,
	}, orderFrame)
	if err != nil {
		return wire.Order{}, unavailable("database", err)
	}
	s.d.Metrics.OrdersCreated.Inc()
	if s.d.Placed != nil {
		s.d.Placed(o)
	}
	return o, nil
}

// Get returns one order to its merchant, its member, or a service.
func (s *Service) Get(ctx context.Context, c Caller, orderNo string) (wire.Order, error) {
	if !wire.ValidOrderNo(orderNo) {
		return wire.Order{}, invalidField("orderNo", "malformed order number")
	}
	o, err := s.order(ctx, orderNo)
	if err != nil {
		return wire.Order{}, err
	}
	if !mayRead(c, o) {
		return wire.Order{}, noOrder(orderNo)
	}
	return o, nil
}

// mayRead reports whether c may see o: its merchant, its member, a service.
func mayRead(c Caller, o wire.Order) bool {
	switch {
	case c.Role == token.RoleService,
		c.Role == token.RoleMerchant && c.Subject == o.MerchantID,
		c.Role == token.RoleMember && c.Subject == o.UserID:
		return true
	}
	return false
}

// noOrder is the answer for a missing order and, word for word, for
// another merchant's or member's order, so order numbers cannot be probed
// (PROTOCOL.md "Limits and hostile clients").
func noOrder(string) *Error { return notFound("no such order") }

func (s *Service) order(ctx context.Context, orderNo string) (wire.Order, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	o, err := s.d.Store.GetOrder(ctx, orderNo)
	if errors.Is(err, store.ErrNotFound) {
		return wire.Order{}, noOrder(orderNo)
	}
	if err != nil {
		return wire.Order{}, unavailable("database", err)
	}
	return o, nil
}

// Process marks an order processed for its merchant or a service. The
// returned event is non-nil only for the call that changed the order.
func (s *Service) Process(ctx context.Context, c Caller, orderNo string) (wire.Order, error) {
	if _, err := s.ownedOrder(ctx, c, orderNo, "process it"); err != nil {
		return wire.Order{}, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	o, ev, changed, err := s.d.Store.ProcessOrder(ctx, orderNo, processedFrame)
	if errors.Is(err, store.ErrNotFound) {
		return wire.Order{}, noOrder(orderNo)
	}
	if err != nil {
		return wire.Order{}, unavailable("database", err)
	}
	if changed {
		s.d.Metrics.OrdersProcessed.Inc()
		if o.SeenAt != nil && o.SeenAt.UnixMilli() == ev.CreatedMS {
			s.d.Metrics.OrderSeen.Observe(o.SeenAt.Sub(o.CreatedAt).Seconds()) // processing was its first seen
		}
	}
	return o, nil
}

// merchantScope checks that c may read merchantID's data.
func merchantScope(c Caller, merchantID string) error {
	if c.Role != token.RoleMerchant && c.Role != token.RoleService {
		return forbidden("only the merchant or a service may read merchant data")
	}
	if !wire.ValidMerchantID(merchantID) {
		return invalidField("id", "merchant id must be 1-64 characters of A-Z a-z 0-9 _ -")
	}
	if c.Role == token.RoleMerchant && c.Subject != merchantID {
		return forbidden("this is another merchant's data")
	}
	return nil
}

// ListParams are the raw query parameters of GET /merchants/{id}/orders.
type ListParams struct {
	Status, Limit, Before string
}

// Page is one page of orders, newest first; Next is the before cursor of
// the next page, "" on the last.
type Page struct {
	Orders []wire.Order `json:"orders"`
	Next   string       `json:"next"`
}

// List pages through a merchant's orders.
func (s *Service) List(ctx context.Context, c Caller, merchantID string, p ListParams) (Page, error) {
	if err := merchantScope(c, merchantID); err != nil {
		return Page{}, err
	}
	if p.Status != "" && p.Status != wire.StatusPending && p.Status != wire.StatusProcessed {
		return Page{}, invalidField("status", "must be pending or processed (or absent for all)")
	}
	limit, err := intParam("limit", p.Limit, 50, 1, 200)
	if err != nil {
		return Page{}, err
	}
	if p.Before != "" && !wire.ValidOrderNo(p.Before) {
		return Page{}, invalidField("before", "malformed order number")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	orders, next, err := s.d.Store.ListOrders(ctx, store.ListQuery{
		MerchantID: merchantID, Status: p.Status, Before: p.Before, Limit: int(limit),
	})
	if errors.Is(err, store.ErrUnknownCursor) {
		return Page{}, invalidField("before", "no order %s of merchant %s", p.Before, merchantID)
	}
	if err != nil {
		return Page{}, unavailable("database", err)
	}
	if orders == nil {
		orders = []wire.Order{}
	}
	return Page{Orders: orders, Next: next}, nil
}

// intParam parses an optional integer query parameter in [min, max].
func intParam(name, raw string, def, min, max int64) (int64, error) {
	if raw == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || v < min || v > max || (len(raw) > 1 && raw[0] == '+') {
		return 0, invalidField(name, "must be an integer from %d to %d, got %s", min, max, strconv.Quote(clip(raw)))
	}
	return v, nil
}

// Summary is the body of GET /merchants/{id}/summary. Undelivered and
// Unseen count pending orders without deliveredAt / seenAt (version 1.1).
type Summary struct {
	MerchantID  string `json:"merchantId"`
	OrderSum    int64  `json:"orderSum"`
	Seq         uint64 `json:"seq"`
	Online      int    `json:"online"`
	Undelivered int64  `json:"undelivered"`
	Unseen      int64  `json:"unseen"`
}

// Summary reads a merchant's counters and open connections.
func (s *Service) Summary(ctx context.Context, c Caller, merchantID string) (Summary, error) {
	if err := merchantScope(c, merchantID); err != nil {
		return Summary{}, err
	}
	dctx, cancel := s.ctx(ctx)
	defer cancel()
	m, err := s.d.Store.Merchant(dctx, merchantID)
	if err != nil {
		return Summary{}, unavailable("database", err)
	}
	rc, err := s.d.Store.Receipts(dctx, merchantID)
	if err != nil {
		return Summary{}, unavailable("database", err)
	}
	// The counters come from the database; presence is Redis's. Without
	// Redis the answer still serves the gateway's state fallback, with
	// online 0 (logged), rather than failing.
	pctx, pcancel := context.WithTimeout(ctx, time.Second)
	defer pcancel()
	online, err := s.d.Presence.Online(pctx, merchantID)
	if err != nil {
		s.d.Logger.Warn("summary without presence", logging.KeyMerchant, merchantID, logging.Err(err))
		online = 0
	}
	return Summary{MerchantID: merchantID, OrderSum: m.Pending, Seq: m.Seq, Online: online,
		Undelivered: rc.Undelivered, Unseen: rc.Unseen}, nil
}

// Events returns raw frames of the merchant's event log after the given
// seq, in seq order.
func (s *Service) Events(ctx context.Context, c Caller, merchantID, after, limit string) ([]string, error) {
	if err := merchantScope(c, merchantID); err != nil {
		return nil, err
	}
	a, err := intParam("after", after, 0, 0, 1<<62)
	if err != nil {
		return nil, invalidField("after", "must be a seq: a non-negative integer, got %s", strconv.Quote(clip(after)))
	}
	n, err := intParam("limit", limit, 500, 1, 1000)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	frames, err := s.d.Store.Events(ctx, merchantID, uint64(a), int(n))
	if err != nil {
		return nil, unavailable("database", err)
	}
	return frames, nil
}

// ownedOrder checks that c may change orderNo (its merchant, or a service)
// and returns the order. Another merchant's order is not found, exactly like
// a missing one, so order numbers cannot be probed.
func (s *Service) ownedOrder(ctx context.Context, c Caller, orderNo, verb string) (wire.Order, error) {
	if c.Role != token.RoleMerchant && c.Role != token.RoleService {
		return wire.Order{}, forbidden("only the order's merchant or a service may %s", verb)
	}
	if !wire.ValidOrderNo(orderNo) {
		return wire.Order{}, invalidField("orderNo", "malformed order number")
	}
	o, err := s.order(ctx, orderNo)
	if err != nil {
		return wire.Order{}, err
	}
	if c.Role == token.RoleMerchant && c.Subject != o.MerchantID {
		return wire.Order{}, noOrder(orderNo)
	}
	return o, nil
}
