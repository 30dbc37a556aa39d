package httpapi_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"orderpush/orderapi/internal/apitest"
	"orderpush/pkg/presence"
	"orderpush/pkg/rediskey"
	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// A notice is routed to the replica holding the connection: the test plays
// a gateway replica by registering a connection in presence and listening
// on the replica's channel.
func TestNoticeRouting(t *testing.T) {
	env := apitest.Start(t, apitest.Options{})
	rdb := redis.NewClient(mustRedisOptions(t, env.RedisURL))
	defer rdb.Close()
	ctx := t.Context()
	reg := presence.New(rdb, 0)
	node, deadNode, deafNode := redistest.Unique("node"), redistest.Unique("node"), redistest.Unique("node")
	m := redistest.Unique("m")
	conn, deadConn, deafConn := redistest.Unique("c"), redistest.Unique("c"), redistest.Unique("c")
	for _, c := range []struct{ conn, node string }{{conn, node}, {deadConn, deadNode}, {deafConn, deafNode}} {
		if err := reg.Add(ctx, c.conn, m, c.node); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{node, deafNode} { // deadNode never beats
		if err := reg.Beat(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	sub := rdb.Subscribe(ctx, rediskey.NodeChannel(node))
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription is confirmed
		t.Fatal(err)
	}
	service := apitest.Token(t, token.RoleService, "ops")

	msg := "店铺公告 <b>&</b> " + strings.Repeat("é", 10)
	body, _ := json.Marshal(map[string]string{"msg": msg})
	resp := env.Do(t, "POST", "/connections/"+conn+"/notice", service, string(body))
	if resp.Status != 202 {
		t.Fatalf("notice: %d %s", resp.Status, resp.Body)
	}
	got, err := sub.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var n wire.Notice
	if err := json.Unmarshal([]byte(got.Payload), &n); err != nil || n.ConnID != conn {
		t.Fatalf("node message %s (%v)", got.Payload, err)
	}
	var f struct {
		Event string          `json:"event"`
		Seq   *uint64         `json:"seq"`
		Data  wire.NoticeData `json:"data"`
	}
	if err := json.Unmarshal(n.Frame, &f); err != nil || f.Event != "notice" || f.Seq != nil || f.Data.Msg != msg {
		t.Fatalf("notice frame %s (%v)", n.Frame, err)
	}

	for _, tc := range []struct {
		name, conn, tok, body string
		status                int
		code                  string
	}{
		{"unknown connection", redistest.Unique("c"), service, `{"msg":"hi"}`, 404, "not_found"},
		{"dead replica", deadConn, service, `{"msg":"hi"}`, 404, "not_found"},
		{"replica not listening", deafConn, service, `{"msg":"hi"}`, 404, "not_found"},
		{"empty msg", conn, service, `{"msg":""}`, 400, "invalid_field"},
		{"msg too long", conn, service, `{"msg":"` + strings.Repeat("字", 1001) + `"}`, 400, "invalid_field"},
		{"msg not string", conn, service, `{"msg":5}`, 400, "invalid_field"},
		{"unknown field", conn, service, `{"msg":"x","to":"all"}`, 400, "invalid_field"},
		{"no body", conn, service, ``, 400, "invalid_json"},
		{"bad conn id", "a%20b", service, `{"msg":"hi"}`, 400, "invalid_field"},
		{"merchant token", conn, apitest.Token(t, token.RoleMerchant, m), `{"msg":"hi"}`, 403, "forbidden"},
	} {
		resp := env.Do(t, "POST", "/connections/"+tc.conn+"/notice", tc.tok, tc.body)
		if resp.Status != tc.status || resp.ErrorCode() != tc.code {
			t.Errorf("%s: %d %s; want %d %s", tc.name, resp.Status, resp.Body, tc.status, tc.code)
		}
	}
	long := `{"msg":"` + strings.Repeat("字", 1000) + `"}`
	if resp := env.Do(t, "POST", "/connections/"+conn+"/notice", service, long); resp.Status != 202 {
		t.Errorf("1000-character notice: %d %s", resp.Status, resp.Body)
	}
}

// online counts the merchant's connections on live replicas.
func TestSummaryOnline(t *testing.T) {
	env := apitest.Start(t, apitest.Options{})
	rdb := redis.NewClient(mustRedisOptions(t, env.RedisURL))
	defer rdb.Close()
	ctx := t.Context()
	reg := presence.New(rdb, 0)
	m := redistest.Unique("m")
	live, dead := redistest.Unique("node"), redistest.Unique("node")
	if err := reg.Beat(ctx, live); err != nil {
		t.Fatal(err)
	}
	for i, node := range []string{live, live, dead} {
		if err := reg.Add(ctx, redistest.Unique("c")+string(rune('a'+i)), m, node); err != nil {
			t.Fatal(err)
		}
	}
	merchant := apitest.Token(t, token.RoleMerchant, m)
	var s struct {
		Online   int    `json:"online"`
		Seq      uint64 `json:"seq"`
		OrderSum int64  `json:"orderSum"`
	}
	resp := env.Do(t, "GET", "/merchants/"+m+"/summary", merchant, "")
	resp.Decode(t, &s)
	if resp.Status != 200 || s.Online != 2 || s.Seq != 0 || s.OrderSum != 0 {
		t.Fatalf("summary: %d %s; want online 2 and zeros", resp.Status, resp.Body)
	}
}
