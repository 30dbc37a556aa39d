// Package orderapi is the gateway's client of the order API: merchant state
// and the event log, for what Redis has lost (PROTOCOL.md "Merchant socket"),
// socket process frames, forwarded with the socket's own token, and the
// receipts (PROTOCOL.md "Receipts and attention"): acks with the service
// token, seen with a token of the merchant.
//
// A Client is safe for concurrent use.
package orderapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"orderpush/pkg/stream"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// MaxEventsPage is the largest page the event log serves.
const MaxEventsPage = 1000

// serviceTokenTTL is the life of a minted service token; it is re-minted
// when half of it has passed.
const serviceTokenTTL = time.Hour

// maxBody bounds what is read from a response: a full events page of large
// frames fits.
const maxBody = 64 << 20

// Config says where the order API is and how the gateway authenticates.
type Config struct {
	BaseURL string // ORDERAPI_URL, e.g. http://127.0.0.1:8090
	Token   string // ORDERAPI_TOKEN: a service token; minted from Secret when empty
	Secret  []byte // JWT_SECRET, for minting
	Timeout time.Duration
}

// Client calls the order API.
type Client struct {
	base   *url.URL
	http   *http.Client
	static string
	secret []byte

	mu      sync.Mutex
	minted  string    // guarded by mu
	renewAt time.Time // guarded by mu
}

// New validates cfg. It needs either a token or a secret to mint one.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("want an http(s) URL like http://orderapi:8090, got %q", cfg.BaseURL)
	}
	if cfg.Token == "" && len(cfg.Secret) == 0 {
		return nil, errors.New("set ORDERAPI_TOKEN (no JWT_SECRET to mint a service token from)")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	return &Client{
		base:   u,
		http:   &http.Client{Timeout: cfg.Timeout, Transport: transport()},
		static: cfg.Token,
		secret: cfg.Secret,
	}, nil
}

// transport keeps enough idle connections for a connect storm: the default
// transport keeps 2 per host, so concurrent state look-ups dialled a new
// connection each (24% of gateway CPU in a 30,000-socket connect run) and
// left TIME_WAIT sockets behind.
func transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 128
	return t
}

// Close drops the idle connections; calls still in flight finish.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Error is an error answer of the order API.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("order api %d %s: %s", e.Status, e.Code, e.Message)
}

// Summary returns the merchant's seq and orderSum.
func (c *Client) Summary(ctx context.Context, merchantID string) (stream.State, error) {
	var body struct {
		OrderSum *int64  `json:"orderSum"`
		Seq      *uint64 `json:"seq"`
	}
	if err := c.getJSON(ctx, nil, &body, "merchants", merchantID, "summary"); err != nil {
		return stream.State{}, fmt.Errorf("summary %s: %w", merchantID, err)
	}
	if body.OrderSum == nil || body.Seq == nil {
		return stream.State{}, fmt.Errorf("summary %s: answer lacks seq or orderSum", merchantID)
	}
	return stream.State{Seq: *body.Seq, OrderSum: *body.OrderSum}, nil
}

// Events returns up to limit events of the merchant's log with seq > after,
// in seq order, checked: each frame has the seq it claims and they increase.
func (c *Client) Events(ctx context.Context, merchantID string, after uint64, limit int) ([]stream.Event, error) {
	limit = max(1, min(limit, MaxEventsPage))
	q := url.Values{"after": {strconv.FormatUint(after, 10)}, "limit": {strconv.Itoa(limit)}}
	var body struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := c.getJSON(ctx, q, &body, "merchants", merchantID, "events"); err != nil {
		return nil, fmt.Errorf("events %s after %d: %w", merchantID, after, err)
	}
	out := make([]stream.Event, 0, len(body.Events))
	last := after
	for _, raw := range body.Events {
		h, err := wire.ParseHead(raw)
		if err != nil || h.Seq <= last {
			return nil, fmt.Errorf("events %s after %d: event out of order or malformed after seq %d", merchantID, after, last)
		}
		last = h.Seq
		out = append(out, stream.Event{Seq: h.Seq, Frame: bytes.Clone(raw)})
	}
	return out, nil
}

// Process marks an order processed on behalf of a socket, with its token.
// A refusal is an *Error.
func (c *Client) Process(ctx context.Context, orderNo, bearer string) error {
	if err := c.post(ctx, bearer, nil, nil, "orders", orderNo, "process"); err != nil {
		return fmt.Errorf("process %s: %w", orderNo, err)
	}
	return nil
}

// Receipts sends a batch of receipts (POST /receipts, at most
// wire.MaxReceiptItems items) with the service token and returns what the
// order API applied and skipped. A refusal is an *Error.
func (c *Client) Receipts(ctx context.Context, b wire.ReceiptBatch) (wire.ReceiptResult, error) {
	tok, err := c.serviceToken()
	if err != nil {
		return wire.ReceiptResult{}, fmt.Errorf("receipts: %w", err)
	}
	body, err := json.Marshal(b)
	if err != nil {
		return wire.ReceiptResult{}, fmt.Errorf("receipts: %w", err)
	}
	var res wire.ReceiptResult
	if err := c.post(ctx, tok, body, &res, "receipts"); err != nil {
		return wire.ReceiptResult{}, fmt.Errorf("receipts (%d acks, %d seen): %w", len(b.Acks), len(b.Seen), err)
	}
	return res, nil
}

// post sends a POST with bearer and an optional JSON body, and decodes the
// answer into v unless v is nil.
func (c *Client) post(ctx context.Context, bearer string, body []byte, v any, elems ...string) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.JoinPath(elems...).String(), rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	return c.do(req, v)
}

func (c *Client) getJSON(ctx context.Context, q url.Values, v any, elems ...string) error {
	u := c.base.JoinPath(elems...)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	tok, err := c.serviceToken()
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return c.do(req, v)
}

func (c *Client) do(req *http.Request, v any) error {
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e wire.ErrorBody
		apiErr := &Error{Status: resp.StatusCode, Code: wire.CodeUnavailable, Message: http.StatusText(resp.StatusCode)}
		if json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
			apiErr.Code, apiErr.Message = e.Error.Code, e.Error.Message
		}
		return apiErr
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

// serviceToken returns ORDERAPI_TOKEN or a minted service token.
func (c *Client) serviceToken() (string, error) {
	if c.static != "" {
		return c.static, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.minted == "" || time.Now().After(c.renewAt) {
		t, err := token.Mint(c.secret, token.RoleService, "gateway", serviceTokenTTL)
		if err != nil {
			return "", err
		}
		c.minted, c.renewAt = t, time.Now().Add(serviceTokenTTL/2)
	}
	return c.minted, nil
}
