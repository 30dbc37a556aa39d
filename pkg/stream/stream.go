// Package stream is the reading side of a merchant's event stream in Redis:
// the history a gateway replays from and the merchant's state (newest seq
// and orderSum), which a gateway also raises after asking the order API.
// Package stream/publish writes both; this side needs none of its settings.
// A Store is safe for concurrent use.
package stream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"orderpush/pkg/rediskey"
)

// NoHistoryStateTTL bounds a state SetState writes for a merchant whose
// history is gone (no event within HISTORY_TTL, or none ever). A state stays
// true until the next event, whose publish rewrites it, so this TTL only
// bounds what Redis holds for ids without events; the price of a shorter
// one is another order API look-up per merchant and period. It equals the
// default HISTORY_TTL.
const NoHistoryStateTTL = 24 * time.Hour

// Store reads merchant streams on one Redis (single or Cluster) and raises
// their state.
type Store struct {
	rdb redis.UniversalClient
}

// New returns a Store.
func New(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb} }

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
// one (a zero st is written only where there is none); a gateway uses it
// after fetching the state from the order API, so the next reader finds it
// in Redis.
func (s *Store) SetState(ctx context.Context, merchantID string, st State) error {
	err := raiseStateScript.Run(ctx, s.rdb,
		[]string{rediskey.State(merchantID), rediskey.History(merchantID)},
		st.Seq, st.OrderSum, NoHistoryStateTTL.Milliseconds()).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("set state %s: %w", merchantID, err)
	}
	return nil
}

// raiseStateScript also writes a zero state where there is none, so a
// merchant without events is known to Redis after one order API look-up and
// later connects (on any replica) do not ask again. Nothing written on
// behalf of a merchant id stays forever: the state expires with the history
// (KEYS[2]), whose remaining TTL it copies, as the publish script gives both
// the same one; this side does not know HISTORY_TTL. Without a history,
// ARGV[3] (ms) bounds it. Both keys carry the merchant's hash tag, so they
// share a slot on Redis Cluster.
var raiseStateScript = redis.NewScript(`
local ttl = redis.call('PTTL', KEYS[2])
if ttl <= 0 then
  ttl = ARGV[3]
end
local cur = redis.call('HGET', KEYS[1], 'seq')
if not cur or tonumber(ARGV[1]) > tonumber(cur) then
  redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'orderSum', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ttl)
elseif redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ttl) -- written before states expired
end
return 0`)
