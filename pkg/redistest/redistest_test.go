package redistest_test

import (
	"context"
	"testing"

	"orderpush/pkg/redistest"
)

func TestRestartComesBackEmpty(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := redistest.Start(t)
	c := s.Client()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	if n := c.Exists(ctx, "k").Val(); n != 0 {
		t.Fatalf("key survived restart: %d", n)
	}
	s.Stop()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("stopped server answered")
	}
}
