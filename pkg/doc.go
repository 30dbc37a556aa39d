// Package pkg is the module both services share. It holds the vocabulary of
// the system and nothing that serves HTTP:
//
//   - wire: socket frames, events, the Order JSON, error codes and bodies,
//     the notice envelope (PROTOCOL.md).
//   - token: JWT claims, verification with a pinned algorithm, and minting.
//   - rediskey: every Redis key and channel name.
//   - stream: the atomic publish script, history reads and merchant state.
//   - presence: which connection belongs to which merchant on which replica.
//   - config, logging: environment parsing and slog set-up.
package pkg
