package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"orderpush/pkg/wire"
)

// OrderFrame builds an order frame the way the order API does (wire.Encode
// once, at commit time), for publishing straight to Redis.
func OrderFrame(merchantID string, seq uint64, now time.Time) []byte {
	o := wire.Order{
		OrderNo:    wire.NewOrderNo("lgpub", now),
		MerchantID: merchantID,
		UserID:     "lgpub",
		Date:       "2022-06-22",
		Price:      3650,
		Status:     wire.StatusPending,
		CreatedAt:  now,
	}
	return wire.MustEncode(wire.EventOrder, seq, now.UnixMilli(), wire.OrderData{OrderSum: int64(seq), Msg: wire.NewOrderMsg, Order: o})
}

// orderBody is the POST /orders body for a merchant.
func orderBody(merchantID string) []byte {
	return []byte(`{"merchantId":"` + merchantID + `","date":"2022-06-22","price":36.5}`)
}

// PostOrder places one order with a member token and returns the order
// number from the 201 body. status is the HTTP status (0 when none).
func (e *Env) PostOrder(ctx context.Context, tok, merchantID string) (orderNo string, status int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.OrderAPI+"/orders", bytes.NewReader(orderBody(merchantID)))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := e.HTTP.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", resp.StatusCode, fmt.Errorf("POST /orders: %d %.200s", resp.StatusCode, body)
	}
	var o struct {
		OrderNo string `json:"orderNo"`
	}
	if err := json.Unmarshal(body, &o); err != nil || o.OrderNo == "" {
		return "", resp.StatusCode, fmt.Errorf("POST /orders: 201 without orderNo: %.200s", body)
	}
	return o.OrderNo, resp.StatusCode, nil
}

// MerchantState is the body of GET /merchants/{id}/summary.
type MerchantState struct {
	MerchantID string `json:"merchantId"`
	OrderSum   int64  `json:"orderSum"`
	Seq        uint64 `json:"seq"`
	Online     int    `json:"online"`
}

// MerchantSummary reads a merchant's summary with a service token.
func (e *Env) MerchantSummary(ctx context.Context, tok, merchantID string) (MerchantState, error) {
	var s MerchantState
	if err := e.getJSON(ctx, tok, "/merchants/"+merchantID+"/summary", &s); err != nil {
		return MerchantState{}, fmt.Errorf("summary %s: %w", merchantID, err)
	}
	return s, nil
}

// ListedOrder is what the receipts accounting reads of an order.
type ListedOrder struct {
	OrderNo     string     `json:"orderNo"`
	CreatedAt   time.Time  `json:"createdAt"`
	DeliveredAt *time.Time `json:"deliveredAt"`
	SeenAt      *time.Time `json:"seenAt"`
}

// MerchantOrders reads every order of a merchant, newest first, a page of
// 200 at a time.
func (e *Env) MerchantOrders(ctx context.Context, tok, merchantID string) ([]ListedOrder, error) {
	var all []ListedOrder
	before := ""
	for {
		var page struct {
			Orders []ListedOrder `json:"orders"`
			Next   string        `json:"next"`
		}
		path := "/merchants/" + merchantID + "/orders?limit=200"
		if before != "" {
			path += "&before=" + before
		}
		if err := e.getJSON(ctx, tok, path, &page); err != nil {
			return nil, fmt.Errorf("orders of %s: %w", merchantID, err)
		}
		all = append(all, page.Orders...)
		if page.Next == "" || len(page.Orders) == 0 {
			return all, nil
		}
		before = page.Next
	}
}

// getJSON GETs path of the order API with tok and decodes a 200 answer.
func (e *Env) getJSON(ctx context.Context, tok, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.OrderAPI+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := e.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%d %.200s", resp.StatusCode, body)
	}
	return json.Unmarshal(body, v)
}

// statusKey names an HTTP failure for error tallies.
func statusKey(status int, err error) string {
	if status != 0 {
		return "http " + strconv.Itoa(status)
	}
	return errKey(err)
}
