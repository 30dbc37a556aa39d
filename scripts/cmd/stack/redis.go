package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"orderpush/pkg/config"
	"orderpush/scripts/launch"
)

// redisServer is the Redis the stack runs on.
type redisServer struct {
	url  string
	kind string // for the banner
	stop func()
}

// startRedis picks the stack's Redis: REDIS_URL when set (it must answer),
// else a private redis-server from PATH, else an in-process miniredis.
// -miniredis forces the last.
func startRedis(ctx context.Context, o options, getenv func(string) string, logDir string, stderr io.Writer) (*redisServer, error) {
	if u := getenv("REDIS_URL"); u != "" && !o.miniredis {
		if err := ping(ctx, u); err != nil {
			return nil, fmt.Errorf("REDIS_URL does not answer: %w (unset it to use a private Redis)", err)
		}
		logf(stderr, "using REDIS_URL")
		return &redisServer{url: u, kind: "REDIS_URL", stop: func() {}}, nil
	}
	port, err := launch.FreePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	url := "redis://" + addr + "/0"
	if bin, err := exec.LookPath("redis-server"); err == nil && !o.miniredis {
		logf(stderr, "starting redis-server on %s", addr)
		p, err := launch.Start(context.WithoutCancel(ctx), launch.Spec{
			Name: "redis-server", Path: bin, LogFile: filepath.Join(logDir, "redis.log"),
			Args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", logDir},
		})
		if err != nil {
			return nil, err
		}
		stop := func() { _, _ = p.Stop(5 * time.Second) }
		if err := waitPing(ctx, url, p); err != nil {
			stop()
			return nil, err
		}
		return &redisServer{url: url, kind: "private redis-server", stop: stop}, nil
	}
	logf(stderr, "no redis-server on PATH (or -miniredis): starting an in-process Redis (miniredis) on %s", addr)
	m := miniredis.NewMiniRedis()
	// Presence keys expire by wall-clock time; miniredis only does that
	// with ClockTTL.
	m.ClockTTL(true)
	if err := m.StartAddr(addr); err != nil {
		return nil, fmt.Errorf("miniredis: %w", err)
	}
	return &redisServer{url: url, kind: "in-process miniredis: single node, no persistence", stop: m.Close}, nil
}

func ping(ctx context.Context, url string) error {
	rc, err := config.ParseRedisURL(url)
	if err != nil {
		return err
	}
	c := rc.NewRedis("orderpush-stack")
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

// waitPing waits until the private server answers.
func waitPing(ctx context.Context, url string, p *launch.Proc) error {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	c := redis.NewClient(opt)
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := c.Ping(pctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if p.Exited() || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("redis-server did not answer: %w\n%s", err, p.LogTail(2048))
		}
		time.Sleep(20 * time.Millisecond) // poll interval, bounded by the deadline
	}
}
