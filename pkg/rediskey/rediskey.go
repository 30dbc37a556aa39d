// Package rediskey builds every Redis key and channel name of the system;
// nobody else formats one.
//
// A merchant's keys carry its channel name as hash tag ({merchant:m1}:...),
// so on Redis Cluster they share the slot of the channel merchant:m1 and the
// publish script can touch them all and SPUBLISH in one call.
package rediskey

// Channel is the pub/sub channel of a merchant's socket frames
// (PROTOCOL.md, "Redis channel").
func Channel(merchantID string) string { return "merchant:" + merchantID }

// History is a sorted set of the merchant's recent frames, scored by seq.
func History(merchantID string) string { return "{merchant:" + merchantID + "}:history" }

// State is a hash with the merchant's newest published seq and orderSum.
func State(merchantID string) string { return "{merchant:" + merchantID + "}:state" }

// Conns is a hash of the merchant's open connections: connId -> node.
func Conns(merchantID string) string { return "{merchant:" + merchantID + "}:conns" }

// Conn is a hash describing one connection: merchant and node.
func Conn(connID string) string { return "conn:" + connID }

// NodeAlive exists while a gateway replica heartbeats.
func NodeAlive(node string) string { return "node:" + node + ":alive" }

// NodeAddr is the URL other gateway replicas reach a replica at
// (ADVERTISE_URL), kept alive like NodeAlive: a socket.io poll that lands
// on another replica is forwarded there, and only there.
func NodeAddr(node string) string { return "node:" + node + ":addr" }

// NodeChannel carries messages for one gateway replica, such as notices to
// a connection it holds.
func NodeChannel(node string) string { return "node:" + node }

// OrderRate holds one member's order rate limiter state (the GCRA
// theoretical arrival time). The member id is the hash tag, so the key has
// a slot of its own on Redis Cluster and the limiter script, which touches
// only this key, runs there unchanged.
func OrderRate(memberID string) string { return "{member:" + memberID + "}:order_rate" }
