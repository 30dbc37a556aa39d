// Package socketio serves socket.io protocol 5 on the default namespace
// over package engineio (PROTOCOL.md, "Other transports"): CONNECT with
// auth (the token, and {pid, offset} for connection state recovery),
// CONNECT_ERROR, EVENT and ACK; other namespaces are refused with
// CONNECT_ERROR.
//
// Each merchant frame becomes an event named by the frame's event, with
// the rest of the frame ({seq, ts, data}) as its argument. Sequenced frames
// carry the seq as a last string argument: the socket.io client keeps it as
// its recovery offset (_lastOffset) and sends it back in the next CONNECT,
// where it is the since of the gateway's replay. A CONNECT answer carries
// the client's old pid again (socket.recovered === true) only when the
// replay covered the whole gap without a resync.
//
// The delivery guarantee stays with the gateway's session (the Backend):
// this package only translates packets. A Conn is safe for concurrent use.
package socketio
