package orderapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

var secret = []byte("orderapi-client-secret-0123456789abcdef")

func TestNewValidates(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "http://", "::"} {
		if _, err := New(Config{BaseURL: u, Secret: secret}); err == nil {
			t.Fatalf("accepted %q", u)
		}
	}
	if _, err := New(Config{BaseURL: "http://x"}); err == nil {
		t.Fatal("accepted no token and no secret")
	}
}

// api answers like the order API; handler gets the verified claims.
func api(t *testing.T, h func(w http.ResponseWriter, r *http.Request, c token.Claims)) *Client {
	v, _ := token.NewVerifier(token.Config{Secret: secret})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		c, err := v.Verify(raw)
		if err != nil {
			w.WriteHeader(401)
			_, _ = w.Write([]byte(`{"error":{"code":"unauthorized","message":"no"}}`))
			return
		}
		h(w, r, c)
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{BaseURL: srv.URL + "/", Secret: secret, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSummaryAndEvents(t *testing.T) {
	c := api(t, func(w http.ResponseWriter, r *http.Request, cl token.Claims) {
		if cl.Role != token.RoleService {
			t.Errorf("role %s", cl.Role)
		}
		switch r.URL.Path {
		case "/merchants/m1/summary":
			_, _ = w.Write([]byte(`{"merchantId":"m1","orderSum":4,"seq":9,"online":1}`))
		case "/merchants/m1/events":
			if r.URL.Query().Get("after") != "7" || r.URL.Query().Get("limit") != "1000" {
				t.Errorf("query %s", r.URL.RawQuery)
			}
			_, _ = w.Write([]byte(`{"events":[{"event":"order","seq":8,"data":{"orderSum":3}},{"event":"order","seq":9,"data":{"orderSum":4}}]}`))
		default:
			w.WriteHeader(404)
		}
	})
	ctx := context.Background()
	st, err := c.Summary(ctx, "m1")
	if err != nil || st.Seq != 9 || st.OrderSum != 4 {
		t.Fatalf("summary %+v %v", st, err)
	}
	evs, err := c.Events(ctx, "m1", 7, 5000)
	if err != nil || len(evs) != 2 || evs[0].Seq != 8 || !strings.Contains(string(evs[1].Frame), `"seq":9`) {
		t.Fatalf("events %+v %v", evs, err)
	}
}

func TestEventsRejectsDisorder(t *testing.T) {
	c := api(t, func(w http.ResponseWriter, r *http.Request, _ token.Claims) {
		_, _ = w.Write([]byte(`{"events":[{"event":"order","seq":9},{"event":"order","seq":8}]}`))
	})
	if _, err := c.Events(context.Background(), "m1", 7, 10); err == nil {
		t.Fatal("accepted events out of order")
	}
	if _, err := c.Events(context.Background(), "m1", 9, 10); err == nil {
		t.Fatal("accepted events at or below after")
	}
}

func TestProcessUsesTheSocketsToken(t *testing.T) {
	c := api(t, func(w http.ResponseWriter, r *http.Request, cl token.Claims) {
		if r.Method != http.MethodPost || r.URL.Path != "/orders/u100000000000000000001/process" {
			t.Errorf("%s %s", r.Method, r.URL.Path)
		}
		if cl.Subject == "m2" {
			w.WriteHeader(403)
			_, _ = w.Write([]byte(`{"error":{"code":"forbidden","message":"not your order"}}`))
			return
		}
		_, _ = w.Write([]byte(`{}`))
	})
	ctx := context.Background()
	own, _ := token.Mint(secret, token.RoleMerchant, "m1", time.Minute)
	if err := c.Process(ctx, "u100000000000000000001", own); err != nil {
		t.Fatal(err)
	}
	other, _ := token.Mint(secret, token.RoleMerchant, "m2", time.Minute)
	var e *Error
	if err := c.Process(ctx, "u100000000000000000001", other); !errors.As(err, &e) || e.Code != "forbidden" || e.Status != 403 {
		t.Fatalf("got %v", err)
	}
}

func TestNonJSONErrorIsUnavailable(t *testing.T) {
	c := api(t, func(w http.ResponseWriter, r *http.Request, _ token.Claims) {
		w.WriteHeader(502)
		_, _ = w.Write([]byte(`bad gateway`))
	})
	var e *Error
	if _, err := c.Summary(context.Background(), "m1"); !errors.As(err, &e) || e.Code != "unavailable" {
		t.Fatalf("got %v", err)
	}
}

// A batch goes to POST /receipts as JSON with the service token, and the
// order API's counts come back; a refusal is an *Error.
func TestReceiptsUsesTheServiceToken(t *testing.T) {
	type call struct{ path, body, role, sub string }
	calls := make(chan call, 2)
	c := api(t, func(w http.ResponseWriter, r *http.Request, cl token.Claims) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		calls <- call{r.URL.Path, string(b), cl.Role, cl.Subject}
		if strings.Contains(string(b), `"seq":99`) {
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"error":{"code":"invalid_field","message":"acks[0].seq: must be an integer"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"acks":{"applied":1,"skipped":0},"seen":{"applied":0,"skipped":1}}`))
	})
	ctx := context.Background()
	b := wire.ReceiptBatch{
		Acks: []wire.AckReceipt{{MerchantID: "m1", Seq: 3}},
		Seen: []wire.SeenReceipt{{MerchantID: "m1", OrderNo: "u100000000000000000001"}},
	}
	res, err := c.Receipts(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	want := wire.ReceiptResult{Acks: wire.ReceiptCounts{Applied: 1}, Seen: wire.ReceiptCounts{Skipped: 1}}
	if res != want {
		t.Fatalf("result %+v, want %+v", res, want)
	}
	body := `{"acks":[{"merchantId":"m1","seq":3}],"seen":[{"merchantId":"m1","orderNo":"u100000000000000000001"}]}`
	if got := <-calls; got != (call{"/receipts", body, token.RoleService, "gateway"}) {
		t.Fatalf("batch sent %+v", got)
	}
	var e *Error
	if _, err := c.Receipts(ctx, wire.ReceiptBatch{Acks: []wire.AckReceipt{{MerchantID: "m1", Seq: 99}}}); !errors.As(err, &e) || e.Code != "invalid_field" || e.Status != 400 {
		t.Fatalf("refused batch: %v", err)
	}
	if got := <-calls; got.body != `{"acks":[{"merchantId":"m1","seq":99}]}` {
		t.Fatalf("batch without seen sent %+v", got)
	}
}
