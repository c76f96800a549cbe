#!/usr/bin/env bash
# Makes sure every service the tests and benchmarks talk to is up, starting what is down,
# and that the `test` database they use exists on PostgreSQL and MariaDB.
# Idempotent: safe to run before every test run. Prints one line per service.
#
# It installs nothing: PostgreSQL, MariaDB and Redis must be installed already (Debian/Ubuntu:
# apt-get install postgresql mariadb-server redis-server), and SeaweedFS (`weed`) comes from
# scripts/install-deps.sh. The start commands are Debian's (pg_ctlcluster, start-stop-daemon),
# run as root, as on the development machines; elsewhere start the services your own way and
# this script only checks them. What it starts keeps running after the tests; SeaweedFS's pid
# is in /tmp/kipper-seaweedfs/weed.pid (stop it with: kill "$(cat /tmp/kipper-seaweedfs/weed.pid)").
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
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 ||
  createdb -h 127.0.0.1 -U postgres test

if ! mariadb -uroot -h127.0.0.1 -e 'select 1' >/dev/null 2>&1; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
wait_for mariadb mariadb -uroot -h127.0.0.1 -e 'select 1'
mariadb -uroot -h127.0.0.1 -e 'CREATE DATABASE IF NOT EXISTS test'

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
wait_for redis redis-cli -h 127.0.0.1 -p 6379 ping

# SeaweedFS as the S3 server of the MinIO/S3 trigger tests (S3 API on 127.0.0.1:8333, path-style,
# identities in scripts/seaweedfs-s3.json). Every port it opens is pinned so that none collides
# with the ports Kipper itself uses (8080 handler, 9090 MinIO webhook); data lives under /tmp.
s3_up() { curl -s -o /dev/null -m 2 http://127.0.0.1:8333/ ; }
if ! s3_up; then
  weed_dir=${KIPPER_SEAWEEDFS_DIR:-/tmp/kipper-seaweedfs}
  mkdir -p "$weed_dir"
  s3_config="$(cd "$(dirname "$0")" && pwd)/seaweedfs-s3.json"
  (cd "$weed_dir" && exec setsid weed mini -dir="$weed_dir" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.config="$s3_config" -admin.ui=false -webdav=false -master.telemetry=false \
    -master.port=9333 -master.port.grpc=19333 -volume.port=9340 -volume.port.grpc=19340 \
    -filer.port=8888 -filer.port.grpc=18888 -s3.port=8333 -s3.port.grpc=18333 \
    -admin.port=23646 -admin.port.grpc=33646 -s3.port.iceberg=0 -s3.port.lance=0 \
    >"$weed_dir/weed.log" 2>&1 </dev/null & echo $! >"$weed_dir/weed.pid") || true
fi
wait_for seaweedfs s3_up
