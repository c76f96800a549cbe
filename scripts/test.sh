#!/usr/bin/env bash
# The test command of the README: installs and starts what the tests need, then
# runs every test of the workspace against the real services.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/services.sh
cargo test --workspace --locked "$@"
