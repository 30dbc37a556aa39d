package attention

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"orderpush/orderapi/internal/store"
	"orderpush/pkg/webhook"
)

func newEvent(a store.Alert, online int) webhook.Event {
	return webhook.Event{
		ID: webhook.EventID(a.Type, a.OrderNo), Type: a.Type, OrderNo: a.OrderNo, MerchantID: a.MerchantID,
		PlacedAt: time.UnixMilli(a.PlacedMS).UTC().Format("2006-01-02T15:04:05.000Z"), Online: online,
	}
}

// maxAnswer is how much of a receiver's answer is read (and discarded, so
// the connection can be reused); the rest is never read.
const maxAnswer = 4 << 10

// newClient returns the webhook's HTTP client: no redirects (a 3xx is a
// failed attempt: the receiver's answer must not steer our requests
// elsewhere), bounded dial, TLS and header waits, small headers.
func newClient(workers int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  http.ProxyFromEnvironment,
			DialContext:            (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:    5 * time.Second,
			ResponseHeaderTimeout:  AttemptTimeout,
			MaxResponseHeaderBytes: 16 << 10,
			MaxIdleConnsPerHost:    workers,
			IdleConnTimeout:        90 * time.Second,
			ForceAttemptHTTP2:      true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// errCanceled means the attempt was abandoned because the replica stops;
// it is neither a success nor the receiver's failure.
var errCanceled = errors.New("attempt canceled")

// post sends one attempt and classifies it by outcome label. status is the
// receiver's HTTP status when there was one.
func (s *Scheduler) post(ctx context.Context, ev webhook.Event) (outcome string, status int, err error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return OutcomeError, 0, err
	}
	actx, cancel := context.WithTimeout(ctx, s.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, s.cfg.URL.String(), bytes.NewReader(body))
	if err != nil {
		return OutcomeError, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "orderpush-attention/1")
	req.Header.Set(webhook.HeaderSignature, webhook.Sign(s.cfg.Secret, body))
	req.Header.Set(webhook.HeaderEventID, ev.ID)
	resp, err := s.client.Do(req)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return "", 0, errCanceled
		case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
			return OutcomeTimeout, 0, err
		}
		return OutcomeError, 0, err
	}
	// Bounded: a receiver answering with an endless body costs at most
	// maxAnswer bytes and the attempt's deadline.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return OutcomeOK, resp.StatusCode, nil
	}
	return OutcomeHTTPError, resp.StatusCode, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
