// Package presence is this replica's side of presence (ARCHITECTURE.md "How an
// order travels" 7): the registry of its open connections, their entries in
// Redis (written in batches on connect, removed on close, retried by the
// next beat when Redis failed), the heartbeat that keeps the replica alive
// for readers, the re-registration after Redis came back empty, and the
// delivery of notices that arrive on the replica's own channel
// (PROTOCOL.md, "Order API", POST /connections/{connId}/notice).
//
// Lifecycle: New, then Run(ctx) on a goroutine of its own (it beats once
// before Ready is closed, so the replica is alive before its first
// connection registers), Leave when the replica drains, Close at the end.
// Add, Open and Remove are for the connect path; Online and Len for
// admission; Conns for the drain.
//
// A Presence is safe for concurrent use. Its lock is never held during I/O.
package presence
