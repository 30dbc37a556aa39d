// Package publish is the writing side of a merchant's event stream in Redis:
// the atomic publish script (history + state + publish, ARCHITECTURE.md "How
// an order travels" 3) and plain publishes for frames outside a stream. Only
// the order API publishes, so only it reads the settings that bound the
// history (HISTORY_SIZE, HISTORY_TTL); package stream reads what this writes.
// A Publisher is safe for concurrent use.
package publish

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"orderpush/pkg/rediskey"
)

//go:embed publish.lua
var publishSrc string

var publishScript = redis.NewScript(publishSrc)

// Defaults of PROTOCOL.md (HISTORY_SIZE, HISTORY_TTL).
const (
	DefaultHistorySize = 1000
	DefaultHistoryTTL  = 24 * time.Hour
)

// Options bound the history. Zero means default.
type Options struct {
	HistorySize int
	HistoryTTL  time.Duration
}

// Publisher writes merchant streams on one Redis (single or Cluster).
type Publisher struct {
	rdb     redis.UniversalClient
	sharded bool
	size    int
	ttl     time.Duration
}

// New returns a Publisher. On a *redis.ClusterClient it publishes with
// SPUBLISH.
func New(rdb redis.UniversalClient, opt Options) *Publisher {
	if opt.HistorySize <= 0 {
		opt.HistorySize = DefaultHistorySize
	}
	if opt.HistoryTTL <= 0 {
		opt.HistoryTTL = DefaultHistoryTTL
	}
	_, sharded := rdb.(*redis.ClusterClient)
	return &Publisher{rdb: rdb, sharded: sharded, size: opt.HistorySize, ttl: opt.HistoryTTL}
}

// Sharded reports whether channels are sharded (Redis Cluster).
func (p *Publisher) Sharded() bool { return p.sharded }

// Publish adds frame, the merchant's event seq, to its history, raises its
// state to (seq, orderSum) if seq is newer, and publishes frame on the
// merchant's channel, all in one script. An event already in history is
// neither added nor published again, so re-publishing (the outbox relay) is
// safe; the result says whether this call published.
func (p *Publisher) Publish(ctx context.Context, merchantID string, seq uint64, orderSum int64, frame []byte) (bool, error) {
	keys, args := p.scriptArgs(merchantID, seq, orderSum, frame)
	n, err := publishScript.Run(ctx, p.rdb, keys, args...).Int()
	if err != nil {
		return false, fmt.Errorf("publish %s seq %d: %w", merchantID, seq, err)
	}
	return n == 1, nil
}

// scriptArgs are the publish script's keys and arguments for one event.
func (p *Publisher) scriptArgs(merchantID string, seq uint64, orderSum int64, frame []byte) ([]string, []any) {
	sharded := "0"
	if p.sharded {
		sharded = "1"
	}
	return []string{rediskey.History(merchantID), rediskey.State(merchantID)},
		[]any{seq, frame, orderSum, p.size, p.ttl.Milliseconds(), rediskey.Channel(merchantID), sharded}
}

// PublishRaw publishes payload on channel with PUBLISH, or SPUBLISH on a
// cluster. It is for frames outside a merchant's stream (notices).
func (p *Publisher) PublishRaw(ctx context.Context, channel string, payload []byte) (int64, error) {
	var cmd *redis.IntCmd
	if p.sharded {
		cmd = p.rdb.SPublish(ctx, channel, payload)
	} else {
		cmd = p.rdb.Publish(ctx, channel, payload)
	}
	n, err := cmd.Result()
	if err != nil {
		return 0, fmt.Errorf("publish %s: %w", channel, err)
	}
	return n, nil
}
