// Package presence records in Redis which connection belongs to which
// merchant on which gateway replica (ARCHITECTURE.md "How an order travels" 7).
//
// A replica writes one entry per connection when it opens and removes it when
// it closes; separately it keeps one liveness key alive with a heartbeat.
// Readers count only entries whose replica is alive, so the connections of a
// replica that died without cleaning up drop out of every answer as soon as
// its liveness key expires, at a cost of one Redis write per replica per beat
// rather than one per socket. Readers also delete such dead entries lazily.
//
// A Registry is safe for concurrent use.
package presence

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"orderpush/pkg/rediskey"
)

// Defaults for the heartbeat: a killed replica leaves presence within TTL.
const (
	DefaultBeatInterval = 3 * time.Second
	DefaultTTL          = 10 * time.Second
	// entryTTL bounds how long an entry of a dead replica can linger in
	// Redis memory if no reader ever looks at it.
	entryTTL = 24 * time.Hour
)

// Registry reads and writes presence.
type Registry struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

// New returns a Registry whose liveness keys live for ttl (0: DefaultTTL).
func New(rdb redis.UniversalClient, ttl time.Duration) *Registry {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Registry{rdb: rdb, ttl: ttl}
}

// Beat marks node alive for the registry's TTL.
func (r *Registry) Beat(ctx context.Context, node string) error {
	if err := r.rdb.Set(ctx, rediskey.NodeAlive(node), 1, r.ttl).Err(); err != nil {
		return fmt.Errorf("presence beat %s: %w", node, err)
	}
	return nil
}

// Renew is Beat that also reports whether node was still alive. When it
// was not (a beat came too late, or Redis lost its data), readers may have
// dropped node's entries as dead, so the caller should Add its connections
// again. It needs Redis 6.2 (SET ... GET).
func (r *Registry) Renew(ctx context.Context, node string) (wasAlive bool, err error) {
	err = r.rdb.SetArgs(ctx, rediskey.NodeAlive(node), 1, redis.SetArgs{TTL: r.ttl, Get: true}).Err()
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, redis.Nil):
		return false, nil
	default:
		return false, fmt.Errorf("presence renew %s: %w", node, err)
	}
}

// Leave removes node's liveness key, so its connections stop counting at
// once (graceful shutdown).
func (r *Registry) Leave(ctx context.Context, node string) error {
	if err := r.rdb.Del(ctx, rediskey.NodeAlive(node)).Err(); err != nil {
		return fmt.Errorf("presence leave %s: %w", node, err)
	}
	return nil
}

// Add records connID of merchantID on node.
func (r *Registry) Add(ctx context.Context, connID, merchantID, node string) error {
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		AddTo(ctx, p, connID, merchantID, node)
		return nil
	})
	if err != nil {
		return fmt.Errorf("presence add %s: %w", connID, err)
	}
	return nil
}

// AddTo queues Add's commands on p, so a caller can record many
// connections in one round trip (the gateway batches concurrent connects).
func AddTo(ctx context.Context, p redis.Pipeliner, connID, merchantID, node string) {
	p.HSet(ctx, rediskey.Conns(merchantID), connID, node)
	p.Expire(ctx, rediskey.Conns(merchantID), entryTTL)
	p.HSet(ctx, rediskey.Conn(connID), "merchant", merchantID, "node", node)
	p.Expire(ctx, rediskey.Conn(connID), entryTTL)
}

// reserveScript counts the merchant's connection entries and, when fewer
// than the limit, records connID in the same step, so two replicas that
// admit at the same moment cannot both take the last place. KEYS[1] is the
// merchant's conns hash; ARGV: connID, node, limit, entry TTL in seconds.
// It returns -1 when it reserved, else the count it found.
var reserveScript = redis.NewScript(`
local n = redis.call('HLEN', KEYS[1])
if n >= tonumber(ARGV[3]) then return n end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return -1
`)

// Reserve records connID of merchantID on node (the merchant's part of
// Add; Add completes it) when the merchant has fewer than limit
// connections on live replicas. It reports whether it reserved and the
// count it saw. The count and the write are one atomic script, so
// concurrent connects on any number of replicas never take more places
// than there are. Entries of replicas that died still count inside the
// script; when they would refuse, Online prunes them and the script runs
// once more.
func (r *Registry) Reserve(ctx context.Context, connID, merchantID, node string, limit int) (ok bool, count int, err error) {
	keys := []string{rediskey.Conns(merchantID)}
	ttl := int64(entryTTL / time.Second)
	for attempt := 0; ; attempt++ {
		n, err := reserveScript.Run(ctx, r.rdb, keys, connID, node, limit, ttl).Int()
		if err != nil {
			return false, 0, fmt.Errorf("presence reserve %s: %w", merchantID, err)
		}
		if n < 0 {
			return true, 0, nil
		}
		if attempt > 0 {
			return false, n, nil
		}
		live, err := r.Online(ctx, merchantID)
		if err != nil {
			return false, 0, err
		}
		if live >= limit {
			return false, live, nil
		}
	}
}

// Remove forgets connID.
func (r *Registry) Remove(ctx context.Context, connID, merchantID string) error {
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, rediskey.Conns(merchantID), connID)
		p.Del(ctx, rediskey.Conn(connID))
		return nil
	})
	if err != nil {
		return fmt.Errorf("presence remove %s: %w", connID, err)
	}
	return nil
}

// Online counts merchantID's connections on live replicas.
func (r *Registry) Online(ctx context.Context, merchantID string) (int, error) {
	conns, err := r.rdb.HGetAll(ctx, rediskey.Conns(merchantID)).Result()
	if err != nil {
		return 0, fmt.Errorf("presence online %s: %w", merchantID, err)
	}
	alive, err := r.alive(ctx, conns)
	if err != nil {
		return 0, err
	}
	n := 0
	var dead []string
	for conn, node := range conns {
		if alive[node] {
			n++
		} else {
			dead = append(dead, conn)
		}
	}
	if len(dead) > 0 {
		// Best effort: a failure only leaves work for the next reader.
		_ = r.rdb.HDel(ctx, rediskey.Conns(merchantID), dead...).Err()
	}
	return n, nil
}

// alive reports for each node named in conns whether it heartbeats.
func (r *Registry) alive(ctx context.Context, conns map[string]string) (map[string]bool, error) {
	alive := make(map[string]bool)
	for _, node := range conns {
		alive[node] = false
	}
	if len(alive) == 0 {
		return alive, nil
	}
	cmds := make(map[string]*redis.IntCmd, len(alive))
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for node := range alive {
			cmds[node] = p.Exists(ctx, rediskey.NodeAlive(node))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("presence liveness: %w", err)
	}
	for node, c := range cmds {
		alive[node] = c.Val() == 1
	}
	return alive, nil
}

// Conn is where a connection lives.
type Conn struct {
	MerchantID string
	Node       string
}

// Locate finds connID on a live replica; ok is false when it is unknown or
// its replica is dead.
func (r *Registry) Locate(ctx context.Context, connID string) (c Conn, ok bool, err error) {
	m, err := r.rdb.HGetAll(ctx, rediskey.Conn(connID)).Result()
	if err != nil {
		return Conn{}, false, fmt.Errorf("presence locate %s: %w", connID, err)
	}
	if m["node"] == "" {
		return Conn{}, false, nil
	}
	n, err := r.rdb.Exists(ctx, rediskey.NodeAlive(m["node"])).Result()
	if err != nil {
		return Conn{}, false, fmt.Errorf("presence locate %s: %w", connID, err)
	}
	return Conn{MerchantID: m["merchant"], Node: m["node"]}, n == 1, nil
}
