#!/usr/bin/env bash
# The project's test command (README: `bash scripts/test.sh`; .ci/run calls it).
#
# Installs or starts what the tests need when it is missing, loudly, then
# checks formatting, vets and runs `go test -race` over every package of every
# module of the Go workspace. Exits non-zero on any failure. It never skips a
# test: a service that cannot be provided stops the run with an error.
#
#   bash scripts/test.sh                          # everything
#   bash scripts/test.sh -run TestE2E ./scripts/...   # extra go test flags and packages
#
# After the unit tests every fuzz target of the tested packages runs for
# FUZZTIME (default 3s; 0 skips it, as does a -run filter).
#
# Arguments are passed to `go test`; those starting with ./ or orderpush/
# replace the default package list (all workspace modules).
#
# Provides to the tests (each may be preset by the caller):
#   REDIS_URL      a Redis that answers (REDIS_URL, else 127.0.0.1:6379, else a
#                  private redis-server on a free port, stopped at exit)
#   PG_ADMIN_URL   a PostgreSQL superuser URL (PG_ADMIN_URL, else
#                  postgres://postgres@127.0.0.1:5432/postgres, else a private
#                  cluster made with initdb on a free port, stopped at exit)
#   CHROMIUM_PATH  the Chromium binary for browser tests
#   NGINX_BIN      the nginx binary for load-balancer tests
# PRIVATE_SERVICES=1 always starts private Redis and PostgreSQL instances
# (leaving a developer's own servers alone).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

say() { printf 'test.sh: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/orderpush-test.XXXXXX")
CLEANUP=()
cleanup() {
	local i
	# Quiet on purpose: the run's output ends with go test's own lines.
	for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do
		eval "${CLEANUP[i]}" >/dev/null 2>&1 || true
	done
	rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

is_root() { [ "$(id -u)" = 0 ]; }

# ---- packages -------------------------------------------------------------

command -v go >/dev/null || die "the go command is not on PATH (Go 1.26 is required; see README.md)"

pg_bindir() {
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		[ -x "$d/initdb" ] && { echo "$d"; return 0; }
	done
	d=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
	[ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
	return 1
}
nginx_bin() { command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; }; }
chromium_bin() {
	if [ -n "${CHROMIUM_PATH:-}" ] && [ -x "$CHROMIUM_PATH" ]; then echo "$CHROMIUM_PATH"; return 0; fi
	command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null
}

missing=()
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-server)
{ command -v psql >/dev/null && pg_bindir >/dev/null; } || missing+=(postgresql)
nginx_bin >/dev/null || missing+=(nginx)
chromium_bin >/dev/null || missing+=(chromium)
{ command -v node >/dev/null && command -v npm >/dev/null; } || missing+=(nodejs npm)
# promtool checks and unit-tests the alert rules (Debian ships it in prometheus).
command -v promtool >/dev/null || missing+=(prometheus)
# A CJK font, so the dashboard screenshots show the Chinese order message
# rather than empty boxes (the tests pass either way).
if [ ! -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; then
	if is_root && command -v apt-get >/dev/null; then
		missing+=(fonts-wqy-microhei)
	else
		say "note: no CJK font (Debian: fonts-wqy-microhei); screenshots will show boxes for Chinese text"
	fi
fi

if [ ${#missing[@]} -gt 0 ]; then
	if ! is_root || ! command -v apt-get >/dev/null; then
		die "missing: ${missing[*]}. Install them (Debian: apt-get install ${missing[*]}) or run this as root on Debian, where it installs them."
	fi
	say "installing missing packages: ${missing[*]} (apt-get)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >&2 || die "apt-get update failed"
	apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
		die "apt-get install ${missing[*]} failed"
fi

# ---- Redis ----------------------------------------------------------------

# redis_ping URL: true when the Redis at URL answers PING. The cluster form
# (redis-cluster://host:port?addr=...) is checked at its first node.
redis_ping() {
	local u=$1
	case $u in
	redis-cluster://*)
		u=${u#redis-cluster://}
		u="redis://${u%%[/?]*}"
		;;
	esac
	[ "$(timeout 5 redis-cli -u "$u" ping 2>/dev/null)" = PONG ]
}

# free_port: a TCP port on 127.0.0.1 nobody listens on now.
free_port() {
	local p i
	for i in $(seq 1 200); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

PRIVATE=${PRIVATE_SERVICES:-0}
[ "$PRIVATE" = 1 ] && unset REDIS_URL PG_ADMIN_URL

if [ -n "${REDIS_URL:-}" ] && redis_ping "$REDIS_URL"; then
	say "Redis: using REDIS_URL"
elif [ "$PRIVATE" != 1 ] && redis_ping redis://127.0.0.1:6379/0; then
	[ -n "${REDIS_URL:-}" ] && say "REDIS_URL does not answer; falling back"
	export REDIS_URL=redis://127.0.0.1:6379/0
	say "Redis: using $REDIS_URL"
else
	port=$(free_port) || die "no free port found"
	mkdir -p "$WORK/redis"
	say "Redis: none answers; starting a private redis-server on 127.0.0.1:$port"
	# A child of this script, not a daemon, so it is reaped when stopped.
	redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
		--dir "$WORK/redis" --logfile "$WORK/redis/redis.log" &
	CLEANUP+=("kill $!; wait $!")
	export REDIS_URL="redis://127.0.0.1:$port/0"
	for _ in $(seq 1 100); do redis_ping "$REDIS_URL" && break; sleep 0.1; done
	redis_ping "$REDIS_URL" || die "private redis-server does not answer; log: $(tail -5 "$WORK/redis/redis.log" 2>/dev/null)"
fi

# ---- PostgreSQL -----------------------------------------------------------

pg_ping() { timeout 10 psql "$1" -Atqc 'select 1' >/dev/null 2>&1; }
PG_DEFAULT='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'

# as_postgres CMD...: run CMD as the postgres user when root (initdb refuses
# to run as root), else as ourselves.
as_postgres() {
	if is_root; then
		id postgres >/dev/null 2>&1 || die "user postgres does not exist (install the postgresql package)"
		if command -v runuser >/dev/null; then
			runuser -u postgres -- "$@"
		else
			su -s /bin/sh postgres -c "$(printf '%q ' "$@")"
		fi
	else
		"$@"
	fi
}

if [ -n "${PG_ADMIN_URL:-}" ] && pg_ping "$PG_ADMIN_URL"; then
	say "PostgreSQL: using PG_ADMIN_URL"
elif [ "$PRIVATE" != 1 ] && pg_ping "$PG_DEFAULT"; then
	[ -n "${PG_ADMIN_URL:-}" ] && say "PG_ADMIN_URL does not answer; falling back"
	export PG_ADMIN_URL=$PG_DEFAULT
	say "PostgreSQL: using 127.0.0.1:5432"
else
	bindir=$(pg_bindir) || die "PostgreSQL's initdb not found"
	port=$(free_port) || die "no free port found"
	pgdir="$WORK/pg"
	mkdir -p "$pgdir"
	is_root && chown postgres "$WORK" "$pgdir"
	chmod 755 "$WORK"
	say "PostgreSQL: none answers; starting a private cluster ($bindir) on 127.0.0.1:$port"
	as_postgres "$bindir/initdb" -D "$pgdir/data" -U postgres --auth=trust --no-sync -E UTF8 >"$WORK/initdb.log" 2>&1 ||
		die "initdb failed: $(tail -5 "$WORK/initdb.log")"
	# The postmaster runs as a child of this script (through runuser), so it
	# is reaped when stopped; SIGTERM to it is a smart shutdown, SIGINT fast.
	as_postgres "$bindir/postgres" -D "$pgdir/data" -p "$port" -k "$pgdir" \
		-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
		-c full_page_writes=off -c max_connections=300 >"$pgdir/postgres.log" 2>&1 &
	CLEANUP+=("as_postgres '$bindir/pg_ctl' -D '$pgdir/data' -m fast -w stop; wait $!")
	export PG_ADMIN_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
	for _ in $(seq 1 300); do pg_ping "$PG_ADMIN_URL" && break; sleep 0.2; done
	pg_ping "$PG_ADMIN_URL" || die "private PostgreSQL does not answer: $(tail -5 "$pgdir/postgres.log" 2>/dev/null)"
fi

# ---- browser, nginx, newman -----------------------------------------------

CHROMIUM_PATH=$(chromium_bin) || die "chromium not found"
NGINX_BIN=$(nginx_bin) || die "nginx not found"
export CHROMIUM_PATH NGINX_BIN

if [ -f deploy/postman/package-lock.json ] && [ ! -d deploy/postman/node_modules ]; then
	say "installing newman: npm ci --prefix deploy/postman"
	npm ci --prefix deploy/postman --no-audit --no-fund >&2 || die "npm ci in deploy/postman failed"
fi

if [ -f scripts/sioclient/package-lock.json ] && [ ! -d scripts/sioclient/node_modules ]; then
	say "installing socket.io-client: npm ci --prefix scripts/sioclient"
	npm ci --prefix scripts/sioclient --no-audit --no-fund >&2 || die "npm ci in scripts/sioclient failed"
fi

# Many sockets per test: raise the open-file limit as far as allowed.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true

# ---- checks and tests -----------------------------------------------------

# Every module of the workspace; `./...` does not cross module boundaries
# from a root without go.mod.
mapfile -t modules < <(go list -m)
[ ${#modules[@]} -ge 4 ] || die "go list -m found ${#modules[@]} workspace modules (${modules[*]}), want at least 4"
all=()
for m in "${modules[@]}"; do all+=("$m/..."); done

say "gofmt -l"
mapfile -t dirs < <(go list -m -f '{{.Dir}}')
unformatted=$(gofmt -l "${dirs[@]}")
[ -z "$unformatted" ] || die "gofmt -l lists files to format:
$unformatted"

say "go vet ${all[*]}"
go vet "${all[@]}" || die "go vet failed"

flags=()
pkgs=()
for a in "$@"; do
	case $a in
	./* | ../* | . | orderpush/*) pkgs+=("$a") ;;
	*) flags+=("$a") ;;
	esac
done
[ ${#pkgs[@]} -gt 0 ] || pkgs=("${all[@]}")

say "go test -race -count=1 -timeout 20m ${flags[*]} ${pkgs[*]}"
set +e
go test -race -count=1 -timeout 20m "${flags[@]}" "${pkgs[@]}"
status=$?
set -e
[ $status -eq 0 ] || exit $status

# ---- fuzzing ---------------------------------------------------------------
#
# Every fuzz target (func FuzzX in a _test.go file) of the tested packages
# runs for FUZZTIME (default 3s) after the unit tests passed, so a crash a
# parser gained fails CI. go test runs the seed corpus of each target with
# the unit tests; this explores beyond it. A failing input is written to the
# package's testdata/fuzz/FuzzX/ and stays a regression test once committed.
# FUZZTIME=0, or a -run filter (a targeted run), skips it.
fuzztime=${FUZZTIME:-3s}
targeted=false
for f in "${flags[@]}"; do
	case $f in -run | -run=*) targeted=true ;; esac
done
if [ "$fuzztime" = 0 ] || $targeted; then
	say "fuzzing skipped (FUZZTIME=0 or -run given)"
	exit 0
fi
fuzz_targets() {
	go list -f '{{.ImportPath}} {{.Dir}}' "${pkgs[@]}" | while read -r ip dir; do
		# A package without fuzz targets (or tests) is no error: under
		# pipefail a failing grep would end the listing early.
		{ grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null || true; } | sed 's/^func //' | sort -u |
			while read -r name; do echo "$ip $dir $name"; done
	done
}
mapfile -t targets < <(fuzz_targets)
say "fuzzing ${#targets[@]} targets for $fuzztime each"
started=$SECONDS
# corpus_size counts the inputs kept for a target (a failure adds one).
corpus_size() { { find "$1/testdata/fuzz/$2" -type f 2>/dev/null || true; } | wc -l; }
fuzz_one() {
	go test -run '^$' -fuzz "^${2}\$" -fuzztime "$fuzztime" "$1" >"$WORK/fuzz.log" 2>&1
}
for t in "${targets[@]}"; do
	read -r ip dir name <<<"$t"
	before=$(corpus_size "$dir" "$name")
	fuzz_one "$ip" "$name" && continue
	# Go 1.26's fuzzing coordinator can report its own -fuzztime deadline
	# as a failure ("context deadline exceeded", no input written) when a
	# worker is slow to stop (go.dev/issue/75804, fixed in Go 1.27). Such a
	# run found nothing: run the target once more. A written input, or a
	# second failure, fails the run.
	if [ "$(corpus_size "$dir" "$name")" = "$before" ] && grep -q 'context deadline exceeded' "$WORK/fuzz.log"; then
		say "fuzz target $name stopped on the coordinator's own deadline with no failing input; running it again"
		fuzz_one "$ip" "$name" && continue
	fi
	cat "$WORK/fuzz.log" >&2
	die "fuzz target $name of $ip failed; the input is in that package's testdata/fuzz/$name/"
done
say "fuzzing done: ${#targets[@]} targets in $((SECONDS - started)) s"
