#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432, trust auth, database `test`) and Redis (127.0.0.1:6379)
# answer, starting them (installing them from Debian's packages first on a machine that has none)
# when they do not. Run as root or as a user with sudo. The tests that need PostgreSQL read
# SMPPGW_TEST_DATABASE_URL, defaulting to postgres://postgres@127.0.0.1:5432/test.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

install() {
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_redis() {
  # tests/redis.rs runs throwaway redis-server instances of its own: the binary must exist even
  # when something else already answers on 6379.
  if ! have redis-server; then install redis-server; fi
  # The shared state needs Redis 7 (EXPIREAT with NX and GT): say so here, not in a failed test.
  local major
  major=$(redis-server --version | sed -n 's/.*v=\([0-9]*\)\..*/\1/p')
  if [ -z "$major" ] || [ "$major" -lt 7 ]; then
    echo "redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'): Redis 7 or later is needed" >&2
    return 1
  fi
  port_open 6379 && return 0
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do port_open 6379 && return 0; sleep 0.1; done
  echo "redis did not start" >&2; return 1
}

can_login() { psql -h 127.0.0.1 -U postgres -w -d postgres -tAc "SELECT 1" >/dev/null 2>&1; }

ensure_postgres() {
  if ! port_open 5432 || ! can_login; then
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then install postgresql; fi
    local v; v=$(ls /etc/postgresql | head -n1)
    # Trust for the tests' user alone, over loopback TCP: one line ahead of the others (added
    # once), so the rest of the machine's rules stay as they were. A running cluster (started
    # by the package on a machine with systemd) must reload to use it.
    local hba="/etc/postgresql/$v/main/pg_hba.conf"
    local line="host all postgres 127.0.0.1/32 trust"
    if ! $SUDO grep -qxF "$line" "$hba"; then
      $SUDO sed -i "1i $line" "$hba"
    fi
    if port_open 5432; then
      $SUDO pg_ctlcluster --skip-systemctl-redirect "$v" main reload || true
    else
      $SUDO pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
    fi
    for _ in $(seq 100); do port_open 5432 && can_login && break; sleep 0.1; done
    port_open 5432 || { echo "postgresql did not start" >&2; return 1; }
    can_login || { echo "postgresql refuses user postgres without a password on 127.0.0.1" >&2; return 1; }
  fi
  psql -h 127.0.0.1 -U postgres -w -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -w -d postgres -c "CREATE DATABASE test" >/dev/null
}

ensure_redis
ensure_postgres
echo "services: postgresql 127.0.0.1:5432 (database test) and redis 127.0.0.1:6379 are up"
