package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"orderpush/orderapi/internal/apitest"
	"orderpush/pkg/poll"
	"orderpush/pkg/redistest"
	"orderpush/pkg/stream"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

type orderJSON struct {
	OrderNo    string  `json:"orderNo"`
	MerchantID string  `json:"merchantId"`
	UserID     string  `json:"userId"`
	Date       string  `json:"date"`
	Price      float64 `json:"price"`
	Status     string  `json:"status"`
	CreatedAt  string  `json:"createdAt"`
}

func place(t *testing.T, env *apitest.Env, tok, merchant string, price string) orderJSON {
	t.Helper()
	resp := env.Do(t, http.MethodPost, "/orders", tok, `{"merchantId":"`+merchant+`","date":"2022-06-22","price":`+price+`}`)
	if resp.Status != http.StatusCreated {
		t.Fatalf("POST /orders: %d %s", resp.Status, resp.Body)
	}
	var o orderJSON
	resp.Decode(t, &o)
	return o
}

var createdAtRe = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

func TestCreateAndGet(t *testing.T) {
	apitest.Each(t, func(t *testing.T, dialect string) {
		env := apitest.Start(t, apitest.Options{Dialect: dialect})
		m := redistest.Unique("m")
		member := apitest.Token(t, token.RoleMember, "u1001")
		// The seed's sample body.
		resp := env.Do(t, http.MethodPost, "/orders", member, `{"merchantId":"`+m+`","date":"2022-06-22","price":36}`)
		if resp.Status != 201 {
			t.Fatalf("POST: %d %s", resp.Status, resp.Body)
		}
		var o orderJSON
		resp.Decode(t, &o)
		if !regexp.MustCompile(`^u1001\d{17}$`).MatchString(o.OrderNo) || o.UserID != "u1001" || o.MerchantID != m ||
			o.Date != "2022-06-22" || o.Price != 36 || o.Status != "pending" || !createdAtRe.MatchString(o.CreatedAt) {
			t.Fatalf("order %+v", o)
		}
		if ms, _ := strconv.ParseInt(o.OrderNo[5:18], 10, 64); time.Since(time.UnixMilli(ms)).Abs() > time.Minute {
			t.Errorf("order number time %d is not now", ms)
		}
		if got := resp.Header.Get("Location"); got != "/orders/"+o.OrderNo {
			t.Errorf("Location %q", got)
		}
		// Sent with its length, not chunked: one write for the whole answer.
		if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(len(resp.Body)) || resp.Body[len(resp.Body)-1] != '\n' {
			t.Errorf("Content-Length %q for %d bytes %q", got, len(resp.Body), resp.Body)
		}
		// Prices keep their exact value; 36.50 comes back as 36.5.
		for in, want := range map[string]string{"36.50": "36.5", "0": "0", "0.01": "0.01", "1e2": "100", "99999999999.99": "99999999999.99"} {
			resp := env.Do(t, http.MethodPost, "/orders", member, `{"merchantId":"`+m+`","date":"2024-02-29","price":`+in+`}`)
			if !bytes.Contains(resp.Body, []byte(`"price":`+want+`,`)) {
				t.Errorf("price %s: %d %s; want %s", in, resp.Status, resp.Body, want)
			}
		}
		service := apitest.Token(t, token.RoleService, "billing")
		so := env.Do(t, http.MethodPost, "/orders", service, `{"merchantId":"`+m+`","date":"2022-06-22","price":1,"userId":"u7"}`)
		if so.Status != 201 || !bytes.Contains(so.Body, []byte(`"userId":"u7"`)) {
			t.Fatalf("service order: %d %s", so.Status, so.Body)
		}
		got := env.Do(t, http.MethodGet, "/orders/"+o.OrderNo, member, "")
		if got.Status != 200 || !bytes.Equal(bytes.TrimSpace(got.Body), bytes.TrimSpace(resp.Body)) {
			t.Fatalf("GET: %d %s; want %s", got.Status, got.Body, resp.Body)
		}
		if r := env.Do(t, http.MethodGet, "/orders/u100199999999999999999", member, ""); r.Status != 404 || r.ErrorCode() != "not_found" {
			t.Fatalf("GET unknown: %d %s", r.Status, r.Body)
		}
	})
}

// Who may do what (PROTOCOL.md, order API table).
func TestAuthorizationMatrix(t *testing.T) {
	apitest.Each(t, func(t *testing.T, dialect string) {
		env := apitest.Start(t, apitest.Options{Dialect: dialect})
		m, other := redistest.Unique("m"), redistest.Unique("m")
		tok := map[string]string{
			"member":         apitest.Token(t, token.RoleMember, "u1"),
			"other member":   apitest.Token(t, token.RoleMember, "u2"),
			"merchant":       apitest.Token(t, token.RoleMerchant, m),
			"other merchant": apitest.Token(t, token.RoleMerchant, other),
			"service":        apitest.Token(t, token.RoleService, "ops"),
		}
		o := place(t, env, tok["member"], m, "5")
		routes := []struct{ method, path string }{
			{"GET", "/orders/" + o.OrderNo},
			{"GET", "/merchants/" + m + "/orders"},
			{"GET", "/merchants/" + m + "/summary"},
			{"GET", "/merchants/" + m + "/events"},
			{"POST", "/connections/c1/notice"},
			{"POST", "/orders/" + o.OrderNo + "/process"},
		}
		// want[caller][i] is the status of routes[i]; notice to an unknown
		// connection is 404 for a service; another merchant's or member's
		// order is 404, as a missing one (no oracle).
		want := map[string][]int{
			"member":         {200, 403, 403, 403, 403, 403},
			"other member":   {404, 403, 403, 403, 403, 403},
			"other merchant": {404, 403, 403, 403, 403, 404},
			"merchant":       {200, 200, 200, 200, 403, 200},
			"service":        {200, 200, 200, 200, 404, 200},
		}
		for _, who := range []string{"member", "other member", "other merchant", "merchant", "service"} {
			for i, r := range routes {
				body := ""
				if r.method == "POST" {
					body = `{"msg":"hi"}`
					if i == 5 {
						body = ""
					}
				}
				resp := env.Do(t, r.method, r.path, tok[who], body)
				if resp.Status != want[who][i] {
					t.Errorf("%s %s as %s: %d %s; want %d", r.method, r.path, who, resp.Status, resp.Body, want[who][i])
				}
				if resp.Status == 403 && resp.ErrorCode() != "forbidden" {
					t.Errorf("%s %s as %s: code %s; want forbidden", r.method, r.path, who, resp.ErrorCode())
				}
			}
		}
		for _, r := range routes {
			for _, bad := range []string{"", "garbage", expiredToken(t), noExpToken(t)} {
				if resp := env.Do(t, r.method, r.path, bad, ""); resp.Status != 401 || resp.ErrorCode() != "unauthorized" {
					t.Errorf("%s %s with bad token: %d %s; want 401", r.method, r.path, resp.Status, resp.Body)
				}
			}
		}
	})
}

func expiredToken(t *testing.T) string {
	tok, err := token.Mint([]byte(apitest.Secret), token.RoleService, "ops", -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func noExpToken(t *testing.T) string {
	tok, err := token.MintClaims([]byte(apitest.Secret), token.Claims{Role: token.RoleService})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestListPaging(t *testing.T) {
	apitest.Each(t, func(t *testing.T, dialect string) {
		env := apitest.Start(t, apitest.Options{Dialect: dialect})
		m := redistest.Unique("m")
		member := apitest.Token(t, token.RoleMember, "u1")
		merchant := apitest.Token(t, token.RoleMerchant, m)
		var newestFirst []string
		for i := range 9 {
			o := place(t, env, member, m, strconv.Itoa(i))
			newestFirst = append([]string{o.OrderNo}, newestFirst...)
			if i%3 == 0 {
				if r := env.Do(t, "POST", "/orders/"+o.OrderNo+"/process", merchant, ""); r.Status != 200 {
					t.Fatalf("process: %d %s", r.Status, r.Body)
				}
			}
		}
		type page struct {
			Orders []orderJSON `json:"orders"`
			Next   string      `json:"next"`
		}
		walk := func(query string) (all []orderJSON, pages int) {
			before := ""
			for {
				r := env.Do(t, "GET", "/merchants/"+m+"/orders?"+query+"&before="+before, merchant, "")
				if r.Status != 200 {
					t.Fatalf("list: %d %s", r.Status, r.Body)
				}
				var p page
				r.Decode(t, &p)
				all, pages = append(all, p.Orders...), pages+1
				if p.Next == "" {
					return all, pages
				}
				before = p.Next
			}
		}
		all, pages := walk("limit=4")
		var nos []string
		for _, o := range all {
			nos = append(nos, o.OrderNo)
		}
		if !slices.Equal(nos, newestFirst) || pages != 3 {
			t.Fatalf("paged %v in %d pages; want %v in 3", nos, pages, newestFirst)
		}
		pending, _ := walk("status=pending&limit=2")
		processed, _ := walk("status=processed")
		if len(pending) != 6 || len(processed) != 3 {
			t.Fatalf("%d pending, %d processed; want 6, 3", len(pending), len(processed))
		}
		for _, o := range pending {
			if o.Status != "pending" {
				t.Fatalf("pending page holds %+v", o)
			}
		}
		r := env.Do(t, "GET", "/merchants/"+redistest.Unique("m")+"/orders", apitest.Token(t, token.RoleService, "ops"), "")
		if r.Status != 200 || string(bytes.TrimSpace(r.Body)) != `{"orders":[],"next":""}` {
			t.Fatalf("empty merchant: %d %s", r.Status, r.Body)
		}
	})
}

// Process is idempotent: the first call emits order.processed with the new
// orderSum; the second answers 200 with the same order and emits nothing.
// The event log returns the frames Redis got, byte for byte, in seq order.
func TestProcessAndEventLog(t *testing.T) {
	apitest.Each(t, func(t *testing.T, dialect string) {
		env := apitest.Start(t, apitest.Options{Dialect: dialect})
		m := redistest.Unique("m")
		member := apitest.Token(t, token.RoleMember, "u1")
		merchant := apitest.Token(t, token.RoleMerchant, m)
		a := place(t, env, member, m, "10")
		place(t, env, member, m, "20.5")
		first := env.Do(t, "POST", "/orders/"+a.OrderNo+"/process", merchant, "")
		second := env.Do(t, "POST", "/orders/"+a.OrderNo+"/process", merchant, "")
		if first.Status != 200 || second.Status != 200 || !bytes.Equal(first.Body, second.Body) ||
			!bytes.Contains(first.Body, []byte(`"status":"processed"`)) {
			t.Fatalf("process twice: %d %s / %d %s", first.Status, first.Body, second.Status, second.Body)
		}
		var sum struct {
			MerchantID string `json:"merchantId"`
			OrderSum   int64  `json:"orderSum"`
			Seq        uint64 `json:"seq"`
			Online     int    `json:"online"`
		}
		env.Do(t, "GET", "/merchants/"+m+"/summary", merchant, "").Decode(t, &sum)
		if sum.MerchantID != m || sum.OrderSum != 1 || sum.Seq != 3 || sum.Online != 0 {
			t.Fatalf("summary %+v; want orderSum 1 seq 3", sum)
		}
		var log struct {
			Events []json.RawMessage `json:"events"`
		}
		env.Do(t, "GET", "/merchants/"+m+"/events", merchant, "").Decode(t, &log)
		if len(log.Events) != 3 {
			t.Fatalf("%d events; want 3", len(log.Events))
		}
		wantHead := []struct {
			event string
			sum   int64
			msg   string
		}{{"order", 1, wire.NewOrderMsg}, {"order", 2, wire.NewOrderMsg}, {"order.processed", 1, ""}}
		for i, raw := range log.Events {
			var f struct {
				Event string         `json:"event"`
				Seq   uint64         `json:"seq"`
				TS    int64          `json:"ts"`
				Data  wire.OrderData `json:"data"`
			}
			if err := json.Unmarshal(raw, &f); err != nil {
				t.Fatal(err)
			}
			w := wantHead[i]
			if f.Event != w.event || f.Seq != uint64(i+1) || f.Data.OrderSum != w.sum || f.Data.Msg != w.msg || f.TS == 0 {
				t.Errorf("event %d = %s; want %s seq %d orderSum %d", i, raw, w.event, i+1, w.sum)
			}
		}
		// Redis history holds the same bytes.
		rdb := redis.NewClient(mustRedisOptions(t, env.RedisURL))
		defer rdb.Close()
		var hist []stream.Event
		poll.TrueWithin(t, 5*time.Second, "3 events in redis history", func() bool {
			var err error
			hist, err = stream.New(rdb).History(t.Context(), m, 0, 0)
			return err == nil && len(hist) == 3
		})
		for i, h := range hist {
			if !bytes.Equal(h.Frame, log.Events[i]) {
				t.Errorf("history %d = %s; event log has %s", i, h.Frame, log.Events[i])
			}
		}
		var tail struct {
			Events []json.RawMessage `json:"events"`
		}
		env.Do(t, "GET", "/merchants/"+m+"/events?after=1&limit=1", merchant, "").Decode(t, &tail)
		if len(tail.Events) != 1 || !bytes.Equal(tail.Events[0], log.Events[1]) {
			t.Fatalf("after=1&limit=1: %s", tail.Events)
		}
		if r := env.Do(t, "POST", fmt.Sprintf("/orders/%s/process", "u199999999999999999"), merchant, ""); r.Status != 404 {
			t.Fatalf("process unknown: %d %s", r.Status, r.Body)
		}
	})
}

func mustRedisOptions(t *testing.T, url string) *redis.Options {
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
