// Package session is one merchant connection on the gateway, whatever the
// transport: its identity (connection id, merchant, token, expiry), its
// bounded send queue (package sendq) and what happens when the queue
// overflows, its place in the hub (it is a hub.Member), the client messages
// it acts on (ping, process, ack, seen; PROTOCOL.md "Merchant socket" and
// "Receipts and attention"), the per-socket message limit
// (CLIENT_MSG_RATE), token expiry, the drain, and the reasons a connection
// ends, said without any transport's words (Reason).
//
// The delivery guarantee (cursor, replay, the sequencer's hand-off) lives
// in the hub; a session only queues what the hub gives it, in order, and
// hands it to its transport. A transport only encodes frames and decodes
// client messages. Adding a transport must not touch this package.
//
// # The contract for transports
//
// A transport is admitted by the server (one pre-upgrade path for every
// transport: origin, token, role, since, limits, drain, presence, hub
// join), which returns a Session whose hello, and resync if any, are
// already queued. The transport then attaches itself with Start(ctx, w,
// replay). The session writes through w from a drainer goroutine that
// exists only while frames wait: the push that makes an idle queue
// non-empty starts one, and it exits when the queue is empty, so an idle
// connection has no writer goroutine. Only the drainer calls w.WriteFrames
// and w.WriteClose, one call at a time, in queue order; WriteClose is the
// last call and ends the connection. A WriteFrames error ends the session
// (the peer is gone): w.CloseNow is called and nothing more is written.
// A long-polling transport (socket.io's Engine.IO polling) is a Writer too:
// its WriteFrames waits until the client's next poll took the batch, so a
// slow poller backs up this queue and its limit applies as on a socket.
//
// The transport hands every client message to Handle (it may block while a
// process call is in flight; call it from the connection's reading side,
// one message at a time), or to Answer when the client waits for an answer
// to each message (a socket.io acknowledgement callback); and calls End
// once its connection is over (the reader returned, or the transport's
// peer is gone or was told to go), never from inside WriteFrames or
// WriteClose. End closes the session if it is still open, stops the replay
// and returns when the write side has finished; the server then removes
// the connection from the hub and presence.
//
// Close asks for an orderly end with a Reason (the transport maps it to
// its own words: a WebSocket close code, the end of an event stream, an
// Engine.IO close packet); Abort drops the connection without one (the end
// of the drain for peers that do not answer, a dead peer). Both are safe
// from any goroutine and never block.
//
// Transports keep their own liveness checks (WebSocket pings, Engine.IO
// pings, SSE heartbeat comments); a peer that fails one is aborted with
// DeadPeer, which counts it.
//
// A Session is safe for concurrent use; Start is called once, then End
// once.
package session
