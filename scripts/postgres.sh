#!/usr/bin/env bash
# Start or stop a throw-away PostgreSQL cluster (Debian's `postgresql` package) on 127.0.0.1 for
# tests and benchmarks: the catalog and job-queue tests run against it as well as SQLite.
#
#   scripts/postgres.sh start    # prints nothing but the URL on stdout: postgresql://vidrag@127.0.0.1:PORT/postgres
#   scripts/postgres.sh stop     # pg_ctl stop -m fast, then the temp folder goes
#   scripts/postgres.sh status   # exit 0 when the cluster answers
#
# Runs as root (initdb refuses root, so the cluster belongs to the `postgres` user) and installs
# `postgresql` with apt-get when no initdb is found. The cluster lives in a temp folder named in
# $PG_STATEFILE (default /tmp/vidrag-postgres.state), trust authentication, user `vidrag`, port
# $PG_PORT (default 54329), socket in the same folder: nothing outside it is touched.
set -euo pipefail
STATE=${PG_STATEFILE:-/tmp/vidrag-postgres.state}
PORT=${PG_PORT:-54329}

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }
url() { echo "postgresql://vidrag@127.0.0.1:$PORT/postgres"; }

case "${1:-}" in
  start)
    if [ -f "$STATE" ] && "$(bindir)/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then url; exit 0; fi
    if [ -z "$(bindir)" ] || [ ! -x "$(bindir)/initdb" ]; then
      echo "postgres: installing Debian's postgresql" >&2
      apt-get update -qq >&2  # a fresh machine may have no package lists yet
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
    fi
    bin=$(bindir)
    dir=$(mktemp -d /tmp/vidrag-pg.XXXXXX)
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_pg "$bin/initdb -D $dir/data -A trust -U vidrag -E UTF8 >$dir/initdb.log 2>&1" \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    # fsync off: a throw-away cluster; a test never survives a power cut
    as_pg "$bin/pg_ctl -D $dir/data -o '-h 127.0.0.1 -p $PORT -k $dir -c fsync=off -c max_connections=200' -l $dir/log -w start" >&2 \
      || { tail -20 "$dir/log" >&2; exit 1; }
    echo "$dir" >"$STATE"
    echo "postgres: up on 127.0.0.1:$PORT (data $dir)" >&2
    url
    ;;
  stop)
    [ -f "$STATE" ] || { echo "postgres: not started here" >&2; exit 0; }
    dir=$(cat "$STATE")
    as_pg "$(bindir)/pg_ctl -D $dir/data -m fast -w stop" >&2 || true
    rm -rf "$dir" "$STATE"
    echo "postgres: stopped" >&2
    ;;
  status) [ -n "$(bindir)" ] && "$(bindir)/pg_isready" -q -h 127.0.0.1 -p "$PORT" ;;
  *) echo "usage: $0 start | stop | status" >&2; exit 2 ;;
esac
