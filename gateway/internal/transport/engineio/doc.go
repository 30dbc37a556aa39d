// Package engineio serves Engine.IO protocol 4, the transport layer under
// socket.io: the handshake, the polling transport (long-poll GET, POST of
// payloads framed with the record separator 0x1e), the websocket
// transport, the probe-and-upgrade from polling to websocket, server pings
// with pingInterval/pingTimeout, and maxPayload. It knows nothing of
// socket.io; a Handler receives each session's messages.
//
// A Session keeps no queue: the layer above (socket.io on the gateway's
// session, whose queue and limits are the only ones) writes one batch at a
// time with Write. On websocket the batch is written at once, one message
// per packet, the messages gathered into one network write (package ws's
// Output, which also bounds the write: a peer still not taking it after
// the write timeout is reported to the Receiver as Stalled); on polling it
// waits for the next GET, and the writer waits until a GET took it, so a
// client that polls slowly backs up the layer above's queue, not this one.
// The upgrade hands what waited for a GET to the websocket before anything
// else, under the lock that serialises websocket writes, so no packet is
// lost or sent twice across it. Packets outside the stream (pings, a
// refusal before CONNECT) go with Send, which does not wait.
//
// Goroutines: an idle websocket session has one, its reader; an idle
// polling session none beyond the client's parked GET. Pings and their
// timeouts are time.AfterFunc timers.
//
// A poll for a session this replica does not hold goes to Config.Foreign,
// which may forward it to the replica that does (see package sidroute).
//
// Server and Session are safe for concurrent use.
package engineio
