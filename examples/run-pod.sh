#!/usr/bin/env bash
# Runs a function locally the way its pod runs it: kipper-shim in front of the handler and,
# for an event trigger (postgres, mysql, redis, minio), the kipper-poll sidecar POSTing to
# the shim's /event. Configuration is the pod's: the same environment variables.
#
#   examples/run-pod.sh examples/hello-node/index.js
#   KIPPER_TRIGGER=redis KIPPER_SOURCE_URL=redis://127.0.0.1:6379 KIPPER_REDIS_LIST=jobs \
#     examples/run-pod.sh examples/event-python/handler.py
#
# Ctrl-C (or SIGTERM) stops both, the sidecar first, as the kubelet would.
set -euo pipefail
cd "$(dirname "$0")/.."
handler=${1:?usage: examples/run-pod.sh HANDLER_FILE}
export PORT=${PORT:-8080}
target=${CARGO_TARGET_DIR:-target}/release

case "${KIPPER_TRIGGER:-http}" in
  postgres|mysql|redis|minio) bins=(--bin kipper-shim --bin kipper-poll); sidecar=1 ;;
  *) bins=(--bin kipper-shim); sidecar=0 ;;
esac
# --workspace with --bin builds only these binaries, with the dependency features of the whole
# workspace: the same build as the benchmarks' and as every other run of this script, so each
# binary is compiled once. The first release build takes a while (README, "Build times");
# cargo's progress shows on stderr.
echo "run-pod: cargo build --release --workspace ${bins[*]} (the first time: up to 20 minutes on a busy 2-core machine)" >&2
cargo build --release --workspace "${bins[@]}"

"$target/kipper-shim" "$handler" &
shim=$!
poll=
stop() {
  [[ -n $poll ]] && kill -TERM "$poll" 2>/dev/null && wait "$poll" 2>/dev/null
  kill -TERM "$shim" 2>/dev/null && wait "$shim" 2>/dev/null
}
trap 'stop; exit 0' INT TERM

if ((sidecar)); then
  # As in the pod: the sidecar feeds the handler only once it is ready.
  until curl -fsS "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1; do
    kill -0 "$shim" 2>/dev/null || { echo "run-pod: kipper-shim exited" >&2; exit 1; }
    sleep 0.1
  done
  KIPPER_TARGET_URL=${KIPPER_TARGET_URL:-http://127.0.0.1:$PORT/event} \
    KIPPER_TARGET_READY_URL=${KIPPER_TARGET_READY_URL:-http://127.0.0.1:$PORT/ready} \
    "$target/kipper-poll" &
  poll=$!
fi
wait -n
stop
