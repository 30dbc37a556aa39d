// Package engineio serves Engine.IO protocol 4, the transport layer under
// socket.io: the handshake, the polling transport (long-poll GET, POST of
// payloads framed with the record separator 0x1e), the websocket
// transport, the probe-and-upgrade from polling to websocket, server pings
// with pingInterval/pingTimeout, and maxPayload. It knows nothing of
// socket.io; a Handler receives each session's messages.
//
// A Session keeps one bounded queue of outgoing entries whatever its
// transport, so an upgrade moves nothing: polling GETs take what is queued;
// on websocket a drainer goroutine runs only while entries wait (the push
// that makes the queue non-empty starts it, and it exits when the queue is
// empty), so an idle websocket session costs one reading goroutine and an
// idle polling session only the client's parked GET. Pings and their
// timeouts are time.AfterFunc timers.
//
// A poll for a session this replica does not hold goes to Config.Foreign,
// which may forward it to the replica that does (see package sidroute).
//
// Server and Session are safe for concurrent use.
package engineio
