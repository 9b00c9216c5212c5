#!/usr/bin/env bash
# Test Kubernetes API server for driftloop's tests (docs/kubernetes-testing.md), no Docker:
#   - etcd 3.4 from Debian's `etcd-server` package (apt), only when `etcd` is not on PATH;
#   - k8s.io/apiextensions-apiserver built with `go install` into a cached bin dir, only when absent
#     (first build ~5-10 min on 2 cores; Go's module and build caches live in ~/go and ~/.cache/go-build);
#   - kubectl must already be installed (the tests drive it like a user would).
# Idempotent: a second run only checks that the three binaries are there.
set -euo pipefail

# Stay on apiserver <= 0.34 with etcd 3.4 (DESIGN.md section 6). Bump together with KUBE_APISERVER_VERSION
# in driftloop/kube/testserver.py.
APISERVER_VERSION=v0.33.13
BIN_DIR=${DRIFTLOOP_BIN_DIR:-$HOME/.cache/driftloop/bin}
APISERVER="$BIN_DIR/apiextensions-apiserver-$APISERVER_VERSION"

if ! command -v etcd >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "[kube] etcd is missing and apt-get is unavailable: install etcd 3.4 (Debian/Ubuntu package" \
      "'etcd-server') so that 'etcd' is on PATH, then re-run .ci/setup" >&2
    exit 1
  fi
  as_root=()
  if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "[kube] etcd is missing; installing it needs root: run 'apt-get install -y etcd-server' as root" >&2
      exit 1
    fi
    as_root=(sudo)
  fi
  echo "[kube] installing etcd (Debian package etcd-server)"
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq etcd-server >/dev/null
fi

if [ ! -x "$APISERVER" ]; then
  GO=$(command -v go || true)
  [ -n "$GO" ] || { [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go; }
  if [ -z "$GO" ]; then
    echo "[kube] Go is needed once to build the test API server (k8s.io/apiextensions-apiserver" \
      "$APISERVER_VERSION): install Go >= 1.24 (https://go.dev/dl) and re-run .ci/setup" >&2
    exit 1
  fi
  echo "[kube] building k8s.io/apiextensions-apiserver@$APISERVER_VERSION (first time only, minutes)"
  mkdir -p "$BIN_DIR"
  build_dir=$(mktemp -d)
  trap 'rm -rf "$build_dir"' EXIT
  # Run outside the repository so that go does not pick up any go.mod around it.
  (cd "$build_dir" && GOBIN="$build_dir" GOFLAGS=-buildvcs=false \
    "$GO" install "k8s.io/apiextensions-apiserver@$APISERVER_VERSION")
  mv "$build_dir/apiextensions-apiserver" "$APISERVER"
fi
ln -sfn "$(basename "$APISERVER")" "$BIN_DIR/apiextensions-apiserver"

if ! command -v kubectl >/dev/null 2>&1; then
  echo "[kube] kubectl is missing: install it (https://kubernetes.io/docs/tasks/tools/) so that" \
    "'kubectl' is on PATH, then re-run .ci/setup" >&2
  exit 1
fi
echo "[kube] ready: etcd $(etcd --version | head -1 | awk '{print $3}'), $APISERVER"
