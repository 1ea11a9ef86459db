#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster (Debian's postgresql-15) for tests and CI: the catalog's
# multi-node database (docs/architecture.md#catalog-queue-and-workers). It listens on 127.0.0.1 only, trusts every loopback
# connection, runs as the postgres user, and keeps everything (data, socket, log) in STATE_DIR.
# Durability is off (fsync, synchronous_commit): this cluster holds nothing worth a flush.
#
#   scripts/postgres-server.sh start  STATE_DIR [PORT]   install if missing, create or restart
#                                                        (idempotent); a free port unless given
#   scripts/postgres-server.sh stop   STATE_DIR
#   scripts/postgres-server.sh status STATE_DIR
#   scripts/postgres-server.sh env    STATE_DIR          export KILN_TEST_DATABASE_URL=postgres://… and KILN_DATABASE (the same)
#
# STATE_DIR must be reachable by the postgres user (e.g. under /var/tmp, not /root); the script
# hands it to that user.
#
# Env at create: PG_LISTEN=ADDR listens there instead of 127.0.0.1, and PG_TRUST_NETWORK=CIDR trusts
# connections from that network too (the fault tests run the server in a network namespace of its
# own, reached from other namespaces at its own address; never use them on a shared host).
set -euo pipefail

usage() {
  echo "usage: $0 start STATE_DIR [PORT] | stop|status|env STATE_DIR" >&2
  exit 2
}
[ $# -ge 2 ] || usage
cmd=$1
dir=$(realpath -m "$2")
want_port=${3:-}
PG_BIN=/usr/lib/postgresql/15/bin
DATABASE=kiln

say() { echo "postgres-server: $*" >&2; }
die() {
  say "$*"
  exit 1
}

# Runs a command as the postgres user: initdb and the server refuse to run as root.
as_pg() {
  if [ "$(id -un)" = postgres ]; then
    "$@"
  else
    runuser -u postgres -- "$@"
  fi
}

install_if_missing() {
  [ -x "$PG_BIN/initdb" ] && return
  [ "$(id -u)" -eq 0 ] || die "postgresql-15 is not installed, and installing it needs root"
  # One apt at a time: the S3 and PostgreSQL scripts may be started together (tests do). The lock
  # is closed before the server starts, or it would inherit it and hold it for its life.
  exec 9>/var/lock/kiln-apt.lock
  flock 9
  if [ ! -x "$PG_BIN/initdb" ]; then
    say "installing postgresql-15 (once per machine)"
    local main_was_up=no
    command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q '^15 *main .*online' && main_was_up=yes
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 \
      postgresql-15 >/dev/null
    # The package makes a default cluster 15/main and may start it: not ours to leave running.
    if [ $main_was_up = no ] && pg_lsclusters -h 2>/dev/null | grep -q '^15 *main .*online'; then
      pg_ctlcluster 15 main stop || true
    fi
  fi
  exec 9>&-
}

free_port() {
  node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'
}

port_of() { sed -n "s/^port = \([0-9]*\).*/\1/p" "$dir/data/postgresql.conf" | tail -n 1; }

is_running() { as_pg "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; }

create() {
  local port=${want_port:-$(free_port)}
  [ ! -e "$dir" ] || [ -z "$(ls -A "$dir")" ] || die "$dir is not empty and holds no cluster of ours"
  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  chmod 700 "$dir"
  as_pg test -x "$dir" || die "the postgres user cannot reach $dir: use a directory under /var/tmp"
  as_pg mkdir "$dir/run"
  as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
    die "initdb failed; see $dir/initdb.log"
  as_pg tee -a "$dir/data/postgresql.conf" >/dev/null <<EOF
# Written by scripts/postgres-server.sh: a throwaway cluster on loopback.
listen_addresses = '${PG_LISTEN:-127.0.0.1}'
port = $port
unix_socket_directories = '$dir/run'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
  if [ -n "${PG_TRUST_NETWORK:-}" ]; then
    echo "host all all $PG_TRUST_NETWORK trust" | as_pg tee -a "$dir/data/pg_hba.conf" >/dev/null
  fi
}

start_server() {
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null ||
    {
      tail -n 20 "$dir/postgres.log" >&2 || true
      die "the server did not start; see $dir/postgres.log"
    }
  local port
  port=$(port_of)
  if [ -z "$(as_pg "$PG_BIN/psql" -h "$dir/run" -p "$port" -U postgres -tAc "select 1 from pg_database where datname = '$DATABASE'" postgres)" ]; then
    as_pg "$PG_BIN/createdb" -h "$dir/run" -p "$port" -U postgres "$DATABASE"
  fi
}

print_env() {
  local url="postgres://postgres@127.0.0.1:$(port_of)/$DATABASE"
  # The tests read KILN_TEST_DATABASE_URL; kiln serve/worker read KILN_DATABASE (--database).
  echo "export KILN_TEST_DATABASE_URL='$url'"
  echo "export KILN_DATABASE='$url'"
}

case $cmd in
  start)
    install_if_missing
    [ -f "$dir/data/PG_VERSION" ] || create
    if [ -n "$want_port" ] && [ "$want_port" != "$(port_of)" ]; then
      say "note: $dir was made with port $(port_of); keeping it"
    fi
    if is_running; then say "already running"; else start_server; fi
    say "ready on 127.0.0.1:$(port_of)"
    print_env
    ;;
  stop)
    [ -f "$dir/data/PG_VERSION" ] || die "$dir holds no cluster"
    if is_running; then as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null; fi
    ;;
  status)
    [ -f "$dir/data/PG_VERSION" ] || die "$dir holds no cluster"
    is_running || die "not running"
    echo "running: 127.0.0.1:$(port_of)"
    ;;
  env)
    [ -f "$dir/data/PG_VERSION" ] || die "$dir holds no cluster"
    print_env
    ;;
  *) usage ;;
esac
