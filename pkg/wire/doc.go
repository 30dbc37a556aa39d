// Package wire is the vocabulary every part of the system speaks: the JSON
// frames a merchant socket carries, the events they name, the Order object,
// every error code with its HTTP status and the error body, and the notice
// envelope a gateway replica receives on its own channel (PROTOCOL.md,
// "Merchant socket", "Order API" and "Redis channel").
//
// Everything here is a value type or a pure function and safe for concurrent
// use.
package wire
