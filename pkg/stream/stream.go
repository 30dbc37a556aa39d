// Package stream is the merchant event stream in Redis: the atomic publish
// script (history + state + publish, ARCHITECTURE.md "How an order travels" 3), and
// the reads a gateway replays from. A Store is safe for concurrent use.
package stream

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
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

// Store reads and writes merchant streams on one Redis (single or Cluster).
type Store struct {
	rdb     redis.UniversalClient
	sharded bool
	size    int
	ttl     time.Duration
}

// New returns a Store. On a *redis.ClusterClient it publishes with SPUBLISH.
func New(rdb redis.UniversalClient, opt Options) *Store {
	if opt.HistorySize <= 0 {
		opt.HistorySize = DefaultHistorySize
	}
	if opt.HistoryTTL <= 0 {
		opt.HistoryTTL = DefaultHistoryTTL
	}
	_, sharded := rdb.(*redis.ClusterClient)
	return &Store{rdb: rdb, sharded: sharded, size: opt.HistorySize, ttl: opt.HistoryTTL}
}

// Sharded reports whether channels are sharded (Redis Cluster).
func (s *Store) Sharded() bool { return s.sharded }

// Publish adds frame, the merchant's event seq, to its history, raises its
// state to (seq, orderSum) if seq is newer, and publishes frame on the
// merchant's channel, all in one script. An event already in history is
// neither added nor published again, so re-publishing (the outbox relay) is
// safe; the result says whether this call published.
func (s *Store) Publish(ctx context.Context, merchantID string, seq uint64, orderSum int64, frame []byte) (bool, error) {
	sharded := "0"
	if s.sharded {
		sharded = "1"
	}
	n, err := publishScript.Run(ctx, s.rdb,
		[]string{rediskey.History(merchantID), rediskey.State(merchantID)},
		seq, frame, orderSum, s.size, s.ttl.Milliseconds(), rediskey.Channel(merchantID), sharded,
	).Int()
	if err != nil {
		return false, fmt.Errorf("publish %s seq %d: %w", merchantID, seq, err)
	}
	return n == 1, nil
}

// PublishRaw publishes payload on channel with PUBLISH, or SPUBLISH on a
// cluster. It is for frames outside a merchant's stream (notices).
func (s *Store) PublishRaw(ctx context.Context, channel string, payload []byte) (int64, error) {
	var cmd *redis.IntCmd
	if s.sharded {
		cmd = s.rdb.SPublish(ctx, channel, payload)
	} else {
		cmd = s.rdb.Publish(ctx, channel, payload)
	}
	n, err := cmd.Result()
	if err != nil {
		return 0, fmt.Errorf("publish %s: %w", channel, err)
	}
	return n, nil
}

// History returns the frames with after < seq <= upto that Redis still
// holds, in seq order, with their seqs. upto 0 means no upper bound. The
// caller checks that they are contiguous: trimmed or expired ones are absent.
func (s *Store) History(ctx context.Context, merchantID string, after, upto uint64) ([]Event, error) {
	max := "+inf"
	if upto > 0 {
		max = strconv.FormatUint(upto, 10)
	}
	zs, err := s.rdb.ZRangeByScoreWithScores(ctx, rediskey.History(merchantID), &redis.ZRangeBy{
		Min: "(" + strconv.FormatUint(after, 10),
		Max: max,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("history %s after %d: %w", merchantID, after, err)
	}
	out := make([]Event, 0, len(zs))
	for _, z := range zs {
		f, ok := z.Member.(string)
		if !ok {
			return nil, fmt.Errorf("history %s: unexpected member type %T", merchantID, z.Member)
		}
		out = append(out, Event{Seq: uint64(z.Score), Frame: []byte(f)})
	}
	return out, nil
}

// Event is one frame of a merchant's stream with its seq.
type Event struct {
	Seq   uint64
	Frame []byte
}

// State is a merchant's newest published seq and its orderSum then.
type State struct {
	Seq      uint64
	OrderSum int64
}

// ErrNoState means Redis holds no state for the merchant: either it never had
// an event, or Redis lost it. Callers that can ask the order API should.
var ErrNoState = errors.New("no merchant state in redis")

// State reads the merchant's state.
func (s *Store) State(ctx context.Context, merchantID string) (State, error) {
	vals, err := s.rdb.HMGet(ctx, rediskey.State(merchantID), "seq", "orderSum").Result()
	if err != nil {
		return State{}, fmt.Errorf("state %s: %w", merchantID, err)
	}
	if vals[0] == nil {
		return State{}, ErrNoState
	}
	var st State
	seq, _ := vals[0].(string)
	sum, _ := vals[1].(string)
	if st.Seq, err = strconv.ParseUint(seq, 10, 64); err != nil {
		return State{}, fmt.Errorf("state %s: seq %q: %w", merchantID, seq, err)
	}
	if st.OrderSum, err = strconv.ParseInt(sum, 10, 64); err != nil {
		return State{}, fmt.Errorf("state %s: orderSum %q: %w", merchantID, sum, err)
	}
	return st, nil
}

// SetState raises the merchant's state to st if Redis has none or an older
// one (a zero st is written only where there is none); a gateway uses it after fetching the state from the order API, so the
// next reader finds it in Redis.
func (s *Store) SetState(ctx context.Context, merchantID string, st State) error {
	err := raiseStateScript.Run(ctx, s.rdb, []string{rediskey.State(merchantID)}, st.Seq, st.OrderSum, s.ttl.Milliseconds()).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("set state %s: %w", merchantID, err)
	}
	return nil
}

// raiseStateScript also writes a zero state where there is none, so a
// merchant without events is known to Redis after one order API look-up and
// later connects (on any replica) do not ask again. The key expires with
// the history (ARGV[3], ms): a state written for an id that never gets an
// event must not stay forever, and the order API can always rebuild it.
var raiseStateScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'seq')
if not cur or tonumber(ARGV[1]) > tonumber(cur) then
  redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'orderSum', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
elseif redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3]) -- written before states expired
end
return 0`)
