// Package e2e holds the end-to-end tests of the whole system: the real
// gateway and orderapi binaries as processes, on a real Redis, driven over
// HTTP and WebSocket exactly as PROTOCOL.md describes. The package has no
// code of its own; see e2e_test.go and client_test.go.
package e2e
