// Package loadgen measures the order push system from the outside, the way
// issue 6 defines its figures: sockets per gigabyte (idle), order-start to
// screen latency (latency, churn), deliveries per second (fanout) and order
// API throughput (orders), and what attackers cost honest clients with the
// limits on (abuse, measured against the same load without the attack in
// the same run). Every scenario is bounded in count and in time,
// speaks only the public contract (PROTOCOL.md), and measures a floor in the
// same run where a figure needs one, so results read as ratios that hold on
// a noisy machine:
//
//   - the raw Redis pub/sub floor: PUBLISH to a plain go-redis subscriber at
//     the rate of the latency scenario, and beside it the same frames through
//     the publish script (what the script itself adds);
//   - the fan-out floor: a minimal in-process coder/websocket server writing
//     pre-encoded frames to K sockets with the same in-flight bound.
//
// The sockets are a minimal RFC 6455 client (wsclient.go) rather than a full
// library: with tens of thousands of sockets and half a million frames a
// second on the same two cores as the system under test, the load generator's
// own cost per socket and per frame must stay small, and the same client
// reads from the gateways and from the floor server. The idle, latency and
// fanout scenarios also speak the other transports (-transport): an SSE
// reader of GET /sse (sseclient.go) and a socket.io client over Engine.IO's
// websocket transport on the same RFC 6455 client (sioclient.go), each with
// one goroutine and two small buffers per socket, both handing the fleet the
// native frames, so every figure is taken the same way for all three.
//
// Latency is measured on this process's monotonic clock: the send time of each
// order (or frame) is recorded locally just before the request, and each
// receipt is matched to it by orderNo or by (merchant, seq). The frames' own
// millisecond "ts" is too coarse for sub-millisecond figures and is not used.
//
// Types here are used by one scenario run at a time unless they say otherwise.
package loadgen
