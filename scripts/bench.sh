#!/usr/bin/env bash
# One command for the whole benchmark of issue 6: builds the binaries, starts
# a local stack (a private redis-server, the order API on SQLite and then on
# PostgreSQL, two gateway replicas), runs every scenario three times with the
# floors, and prints the per-run tables and the medians against the targets.
#
#   bash scripts/bench.sh                 # everything, median of 3 (about 10 minutes)
#   bash scripts/bench.sh -quick          # every scenario at a tiny size (a smoke run)
#   bash scripts/bench.sh -only fanout -runs 5
#   bash scripts/bench.sh -big 100000     # also 100k idle sockets once
#
# Flags are the loadgen bench flags (go run ./scripts/cmd/loadgen bench -h).
# Needs redis-server on PATH and PostgreSQL at PG_ADMIN_URL (default
# postgres://postgres@127.0.0.1:5432/postgres); `bash scripts/test.sh`
# installs and starts both on a fresh Debian machine. Results, logs and
# gateway profiles go to artifacts/bench-<time>/ (or -out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

# Room for 100k sockets on each side. The load generator raises the limit
# itself too (its children, the services, inherit it); raising it here also
# covers `go run`'s own process when it is allowed.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

go build -o bin/loadgen ./scripts/cmd/loadgen
exec bin/loadgen bench "$@"
