#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on 127.0.0.1 for tests and benchmarks, from
# Debian's postgresql package. initdb and postgres refuse to run as root, so as
# root they run as the `postgres` user the package creates.
#
#   deploy/postgres/postgres.sh up     init (once) and start; print the DSN
#   deploy/postgres/postgres.sh down   stop the cluster this script started
#   deploy/postgres/postgres.sh status exit 0 if the cluster is running
#   deploy/postgres/postgres.sh dsn    print the DSN
#
# Environment: PG_PORT (55432), PG_DATA_DIR (/tmp/callstream-pg-<port>).
set -euo pipefail

port=${PG_PORT:-55432}
data=${PG_DATA_DIR:-/tmp/callstream-pg-$port}
dsn="postgres://callstream@127.0.0.1:$port/callstream?sslmode=disable"

say() { echo "postgres: $*" >&2; }
die() { say "$*"; exit 1; }

bindir() {
	local d
	for d in /usr/lib/postgresql/*/bin; do
		[[ -x $d/initdb ]] && { echo "$d"; return 0; }
	done
	return 1
}

as_owner() {
	if [[ $(id -u) == 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

up() {
	local bin
	bin=$(bindir) || die "PostgreSQL server binaries not found under /usr/lib/postgresql; install them: apt-get install -y postgresql"
	if [[ $(id -u) == 0 ]] && ! id postgres >/dev/null 2>&1; then
		die "running as root needs the 'postgres' user that Debian's postgresql package creates"
	fi
	if [[ ! -f $data/PG_VERSION ]]; then
		mkdir -p "$data"
		[[ $(id -u) == 0 ]] && chown postgres:postgres "$data"
		chmod 700 "$data"
		as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$data.initdb.log" 2>&1 \
			|| { cat "$data.initdb.log" >&2; die "initdb failed"; }
		cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data'
fsync = on
synchronous_commit = on
shared_buffers = 256MB
max_connections = 200
CONF
	fi
	if as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
		say "already running on port $port, reusing it"
	else
		as_owner "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start >/dev/null \
			|| { tail -n 30 "$data/server.log" >&2; die "the server did not start (log above)"; }
	fi
	as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qtAc \
		"SELECT 1 FROM pg_roles WHERE rolname='callstream'" | grep -q 1 \
		|| as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc "CREATE ROLE callstream LOGIN SUPERUSER"
	as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qtAc \
		"SELECT 1 FROM pg_database WHERE datname='callstream'" | grep -q 1 \
		|| as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc "CREATE DATABASE callstream OWNER callstream"
	echo "$dsn"
}

down() {
	local bin
	bin=$(bindir) || { say "no PostgreSQL binaries; nothing to stop"; return 0; }
	if [[ -f $data/postmaster.pid ]] && as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
		as_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
		say "stopped"
	else
		say "not running"
	fi
}

status() {
	local bin
	bin=$(bindir) || { echo "not running (no PostgreSQL binaries)"; return 1; }
	if as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then echo "running on port $port"; else echo "not running"; return 1; fi
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
dsn) echo "$dsn" ;;
*) echo "usage: $0 up|down|status|dsn" >&2; exit 2 ;;
esac
