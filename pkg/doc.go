// Package pkg is the module both services share. It holds the vocabulary of
// the system and nothing that serves HTTP:
//
//   - wire: socket frames, events, the Order JSON, error codes and bodies,
//     the notice envelope (PROTOCOL.md).
//   - token: JWT claims, verification with a pinned algorithm, and minting.
//   - rediskey: every Redis key and channel name.
//   - stream: a merchant stream's reading side: history and state reads,
//     and the state a gateway raises after asking the order API.
//   - stream/publish: its writing side, the atomic publish script and the
//     history bounds (HISTORY_SIZE, HISTORY_TTL); only the order API uses it.
//   - presence: which connection belongs to which merchant on which replica.
//   - config, logging: environment parsing and slog set-up;
//     config/envscan reads from the source the settings a binary takes, so
//     the deployment files' tests can check them against it.
//
// For tests only: redistest and pgtest start private Redis and PostgreSQL
// servers, poll waits for a condition under a deadline instead of sleeping.
package pkg
