package postmantest_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"orderpush/orderapi/internal/apitest"
	"orderpush/orderapi/internal/server"
	"orderpush/pkg/config"
	"orderpush/pkg/presence"
	"orderpush/pkg/rediskey"
	"orderpush/pkg/redistest"
	"orderpush/pkg/token"
)

// TestNewman runs deploy/postman/orderpush.postman_collection.json against
// a real server on SQLite and Redis. A live connection for the notice
// request is played by this test: it registers one in presence and listens
// on its replica's channel, as a gateway would.
func TestNewman(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("..", "..", "..", "deploy", "postman"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", ".bin", "newman")); err != nil {
		t.Fatalf("newman is not installed: run `npm ci --prefix deploy/postman` (the README's test command does): %v", err)
	}
	// The production settings the collection checks: merchants must be
	// registered (its first request does it), and the default ORDER_RATE
	// (its last request floods until 429).
	env := apitest.Start(t, apitest.Options{Tweak: func(c *server.Config) {
		c.Merchants = server.MerchantsRegistered
		c.OrderRate = config.Rate{N: 20, Per: time.Second}
	}})

	o, err := redis.ParseURL(env.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(o)
	defer rdb.Close()
	node, conn, merchant := redistest.Unique("node"), redistest.Unique("c"), redistest.Unique("m")
	reg := presence.New(rdb, 0)
	if err := reg.Beat(t.Context(), node); err != nil {
		t.Fatal(err)
	}
	// Heartbeat like a gateway replica while newman runs (it may take
	// longer than the liveness TTL on a busy machine).
	beatCtx, stopBeat := context.WithCancel(t.Context())
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		tick := time.NewTicker(presence.DefaultBeatInterval)
		defer tick.Stop()
		for {
			select {
			case <-beatCtx.Done():
				return
			case <-tick.C:
				if err := reg.Beat(beatCtx, node); err != nil && beatCtx.Err() == nil {
					t.Errorf("beat: %v", err)
				}
			}
		}
	}()
	defer func() { stopBeat(); <-beating }()
	if err := reg.Add(t.Context(), conn, merchant, node); err != nil {
		t.Fatal(err)
	}
	sub := rdb.Subscribe(t.Context(), rediskey.NodeChannel(node))
	defer sub.Close()
	if _, err := sub.Receive(t.Context()); err != nil {
		t.Fatal(err)
	}

	vars := map[string]string{
		"baseUrl":            env.URL,
		"merchantId":         merchant,
		"merchantToken":      apitest.Token(t, token.RoleMerchant, merchant),
		"otherMerchantToken": apitest.Token(t, token.RoleMerchant, redistest.Unique("m")),
		"memberToken":        apitest.Token(t, token.RoleMember, "u1001"),
		"serviceToken":       apitest.Token(t, token.RoleService, "postman"),
		"connId":             conn,
		"connIdLive":         "true",
	}
	args := []string{"--no-install", "newman", "run", "orderpush.postman_collection.json",
		"-e", "local.postman_environment.json", "--reporters", "cli", "--color", "off", "--disable-unicode"}
	for k, v := range vars {
		args = append(args, "--env-var", k+"="+v)
	}
	cmd := exec.CommandContext(t.Context(), "npx", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("newman failed (%v):\n%s", err, out)
	}
	if !strings.Contains(string(out), "assertions") {
		t.Fatalf("newman printed no summary:\n%s", out)
	}
	t.Logf("newman:\n%s", tail(string(out), 25))
	msg, err := sub.ReceiveMessage(t.Context())
	if err != nil || !strings.Contains(msg.Payload, conn) {
		t.Fatalf("the notice did not reach the replica's channel: %v %s", err, msg)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
