// Package wire is the vocabulary every part of the system speaks: the JSON
// frames a merchant socket carries, the events they name, and the Order object
// (PROTOCOL.md, "Merchant socket" and "Order API").
//
// Everything here is a value type or a pure function and safe for concurrent
// use.
package wire
