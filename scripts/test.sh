#!/usr/bin/env bash
# The test command of the README: installs the Python tools the tests need
# (install-deps.sh: pip, into the python3 on PATH), starts the services that are
# down and creates the `test` databases (services.sh: it installs no service),
# then runs every test of the workspace against the real services. The services
# keep running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/services.sh
cargo test --workspace --locked "$@"
