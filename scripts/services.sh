#!/usr/bin/env bash
# Makes sure every service the test suite talks to is up, starting what is down.
# Idempotent: safe to run before every test run. Prints one line per service.
# The commands are the machine's own (see the env skill, machines/rust-svc.md).
set -euo pipefail

wait_for() { # name, check command...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then echo "services: $name is up"; return 0; fi
    sleep 0.5
  done
  echo "services: $name did not come up; the tests that need it will fail" >&2
  return 1
}

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
fi
wait_for postgresql pg_isready -q -h 127.0.0.1 -p 5432

if ! mariadb -uroot -h127.0.0.1 -e 'select 1' >/dev/null 2>&1; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
wait_for mariadb mariadb -uroot -h127.0.0.1 -e 'select 1'

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
wait_for redis redis-cli -h 127.0.0.1 -p 6379 ping
