#!/usr/bin/env bash
# Kubernetes API server for driftloop's tests (docs/kubernetes-testing.md), no Docker:
#   - etcd 3.4 from Debian's `etcd-server` package (apt), only when `etcd` is not on PATH;
#   - driftloop-kube-apiserver-full-<hash>: upstream kube-apiserver v1.33 (k8s.io/kubernetes/cmd/kube-apiserver
#     built in module driftloop/kube/kube-apiserver/, which replaces every k8s.io staging module by its v0.33
#     release), built with Go into a cached bin dir under a name carrying the hash of go.mod and go.sum, only
#     when that binary is absent (cold: ~12 min on 2 cores; Go's module and build caches live in ~/go/pkg/mod
#     and ~/.cache/go-build, from which a rebuild takes under a minute);
#   - kubectl must already be installed (the tests drive it as a user would).
# Idempotent: a second run only checks that the binaries are there.
set -euo pipefail
cd "$(dirname "$0")/../.."

# k8s.io/kubernetes v1.33.x: kube-apiserver 1.33 still supports etcd 3.4 (DESIGN.md section 6).
SRC=driftloop/kube/kube-apiserver
BIN_DIR=${DRIFTLOOP_BIN_DIR:-$HOME/.cache/driftloop/bin}
# Same name as driftloop.kube.full_apiserver.full_apiserver_binary_name().
APISERVER="$BIN_DIR/driftloop-kube-apiserver-full-$(cat "$SRC/go.mod" "$SRC/go.sum" | sha256sum | cut -c1-12)"

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
  if [ -z "$GO" ] && [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; fi
  if [ -z "$GO" ]; then
    echo "[kube] Go is needed once to build kube-apiserver ($SRC): install Go >= 1.24" \
      "(https://go.dev/dl) and re-run .ci/setup" >&2
    exit 1
  fi
  # /version says the release go.mod requires, as the release build's ldflags make it (else v0.0.0-master).
  K8S_VERSION=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v1\./ {print $2; exit}' "$SRC/go.mod")
  VERSION_PKG=k8s.io/component-base/version
  LDFLAGS="-X $VERSION_PKG.gitVersion=$K8S_VERSION -X $VERSION_PKG.gitMajor=1"
  LDFLAGS="$LDFLAGS -X $VERSION_PKG.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
  echo "[kube] building $(basename "$APISERVER") from $SRC (first time only, minutes)"
  mkdir -p "$BIN_DIR"
  tmp="$APISERVER.tmp.$$"
  (cd "$SRC" && GOFLAGS="-mod=readonly -buildvcs=false" "$GO" build -trimpath -ldflags="$LDFLAGS" -o "$tmp" \
    k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$tmp" "$APISERVER"
fi
# Older builds are dead weight (~140 MB each), and so are those of the CRD-only server this one replaced.
find "$BIN_DIR" -maxdepth 1 \( -name 'driftloop-kube-apiserver-full-????????????' ! -name "$(basename "$APISERVER")" \
  -o -name 'driftloop-kube-apiserver-????????????' \) -delete

if ! command -v kubectl >/dev/null 2>&1; then
  echo "[kube] kubectl is missing: install it (https://kubernetes.io/docs/tasks/tools/) so that" \
    "'kubectl' is on PATH, then re-run .ci/setup" >&2
  exit 1
fi
echo "[kube] ready: etcd $(etcd --version | head -1 | awk '{print $3}'), $(basename "$APISERVER"), kubectl"
