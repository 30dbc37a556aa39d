// Package launch runs the system's binaries as real processes: for the
// end-to-end and fault tests, the one-command local stack, the
// production-like stack and the load generator.
//
// It finds the repository root, builds gateway and orderapi once with the
// workspace, picks free loopback ports, starts processes with their own log
// files, waits for their /readyz and stops them (SIGTERM, then SIGKILL after
// a timeout). A Proc's methods are safe for concurrent use.
//
// Children started here are killed when the parent dies (Linux: parent-death
// signal) or when the context given to Start ends, so a failed or
// interrupted test never leaves a replica behind.
package launch
