#!/usr/bin/env bash
# Test Kubernetes API server for driftloop's tests (docs/kubernetes-testing.md), no Docker:
#   - etcd 3.4 from Debian's `etcd-server` package (apt), only when `etcd` is not on PATH;
#   - driftloop-kube-apiserver: k8s.io/apiextensions-apiserver plus /apis discovery
#     (driftloop/kube/apiserver/main.go), built with Go into a cached bin dir named after the hash of its
#     sources, only when that binary is absent (first build a few minutes on 2 cores; Go's module and build
#     caches live in ~/go/pkg/mod and ~/.cache/go-build);
#   - driftloop-kube-apiserver-full: upstream kube-apiserver v1.33 (k8s.io/kubernetes/cmd/kube-apiserver,
#     module driftloop/kube/kube-apiserver/: every k8s.io staging module replaced by its v0.33 release),
#     built the same way into the same bin dir, named after the hash of go.mod and go.sum (~12 min cold);
#   - kubectl must already be installed (the tests drive it as a user would).
# Idempotent: a second run only checks that the binaries are there.
set -euo pipefail
cd "$(dirname "$0")/../.."

# k8s.io/apiextensions-apiserver v0.33.13 (pinned in driftloop/kube/apiserver/go.mod): stay on <= v0.34
# while etcd is 3.4 (DESIGN.md section 6).
SRC=driftloop/kube/apiserver
BIN_DIR=${DRIFTLOOP_BIN_DIR:-$HOME/.cache/driftloop/bin}
# Same name as driftloop.kube.testserver.apiserver_binary_name(): sources' hash, so an edit rebuilds.
APISERVER="$BIN_DIR/driftloop-kube-apiserver-$(cat "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum" | sha256sum | cut -c1-12)"
# Same name as driftloop.kube.full_apiserver.full_apiserver_binary_name().
FULL_SRC=driftloop/kube/kube-apiserver
FULL_APISERVER="$BIN_DIR/driftloop-kube-apiserver-full-$(cat "$FULL_SRC/go.mod" "$FULL_SRC/go.sum" | sha256sum | cut -c1-12)"

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

find_go() {
  GO=$(command -v go || true)
  if [ -z "$GO" ] && [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; fi
  if [ -z "$GO" ]; then
    echo "[kube] Go is needed once to build the test API servers ($SRC, $FULL_SRC):" \
      "install Go >= 1.24 (https://go.dev/dl) and re-run .ci/setup" >&2
    exit 1
  fi
}

# build_once BINARY DIR PACKAGE GLOB [LDFLAGS]: go build PACKAGE in module DIR into BINARY unless it is
# there, then delete older builds whose names match GLOB (each >= 110 MB of dead weight).
build_once() {
  local binary=$1 dir=$2 package=$3 glob=$4 ldflags=${5:-}
  [ -x "$binary" ] && return 0
  find_go
  echo "[kube] building $(basename "$binary") from $dir (first time only, minutes)"
  mkdir -p "$BIN_DIR"
  local tmp="$binary.tmp.$$"
  (cd "$dir" && GOFLAGS="-mod=readonly -buildvcs=false" "$GO" build -trimpath -ldflags="$ldflags" -o "$tmp" "$package")
  mv "$tmp" "$binary"
  find "$BIN_DIR" -maxdepth 1 -name "$glob" ! -name "$(basename "$binary")" -delete
}

# apiextensions-apiserver plus /apis discovery (the CRD-only server).
build_once "$APISERVER" "$SRC" . 'driftloop-kube-apiserver-????????????'
# The full kube-apiserver. Its /version says the release go.mod requires (as the release build's ldflags
# make it; without them it says v0.0.0-master).
K8S_VERSION=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v1\./ {print $2; exit}' "$FULL_SRC/go.mod")
K8S_MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)
VERSION_PKG=k8s.io/component-base/version
build_once "$FULL_APISERVER" "$FULL_SRC" k8s.io/kubernetes/cmd/kube-apiserver 'driftloop-kube-apiserver-full-????????????' \
  "-X $VERSION_PKG.gitVersion=$K8S_VERSION -X $VERSION_PKG.gitMajor=1 -X $VERSION_PKG.gitMinor=$K8S_MINOR"

if ! command -v kubectl >/dev/null 2>&1; then
  echo "[kube] kubectl is missing: install it (https://kubernetes.io/docs/tasks/tools/) so that" \
    "'kubectl' is on PATH, then re-run .ci/setup" >&2
  exit 1
fi
echo "[kube] ready: etcd $(etcd --version | head -1 | awk '{print $3}'), $(basename "$APISERVER")," \
  "$(basename "$FULL_APISERVER"), kubectl"
