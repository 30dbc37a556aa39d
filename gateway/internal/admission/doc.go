// Package admission decides, before the upgrade, whether a new socket (of
// any transport) may open (PROTOCOL.md, "Limits and hostile clients"): a
// refused client costs no socket and no goroutine beyond its HTTP request.
//
// Three limits, each off with 0:
//
//   - CONNECT_RATE per client IP: a token bucket per address (per /64 for
//     IPv6), 429 rate_limited with Retry-After.
//   - MAX_CONNS per replica: open sockets plus connects in progress, 503
//     unavailable with Retry-After.
//   - MAX_CONNS_PER_MERCHANT across all replicas: presence is the count; a
//     place is reserved atomically in Redis (see presence.Registry.Reserve),
//     429 too_many_connections with Retry-After. Redis unreachable: the
//     connect is let through and counted in
//     gateway_limit_fail_open_total{limit="max_conns_per_merchant"}.
//
// The client IP is the TCP peer, or, when the peer is a trusted proxy
// (TRUSTED_PROXIES), the address X-Forwarded-For names (see ClientIP).
//
// An Admission is safe for concurrent use.
package admission
