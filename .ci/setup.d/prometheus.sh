#!/usr/bin/env bash
# Prometheus server for driftloop's rollout tests (tests/fixtures/prometheus_server.py), no Docker, no binary
# downloads: github.com/prometheus/prometheus/cmd/prometheus at a pinned module version, built with Go into a
# cached bin dir under a name carrying that version, only when that binary is absent (cold: 19 min wall,
# 6 min CPU, on the shared 2-core machine, most of it fetching modules; Go's module and build caches live in
# ~/go/pkg/mod and ~/.cache/go-build, from which a rebuild is quick).
#   - Module tag v0.315.1 is Prometheus 3.15.1 (module tags v0.3xx.y are releases 3.xx.y).
#   - Built with the `remove_all_sd` tag: every service-discovery plugin (Kubernetes, AWS, Azure, Consul, ...)
#     is left out; static_configs, all the tests use, are part of the core. Without `builtinassets` the web
#     UI is not embedded; the HTTP API (/api/v1/*) the tests query is all there.
# Idempotent: a second run only checks that the binary is there.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Same values as tests/fixtures/prometheus_server.py (PROMETHEUS_MODULE_VERSION, prometheus_binary_name()).
PROMETHEUS_MODULE_VERSION=v0.315.1
PROMETHEUS_RELEASE=3.15.1
BIN_DIR=${DRIFTLOOP_BIN_DIR:-$HOME/.cache/driftloop/bin}
PROMETHEUS="$BIN_DIR/driftloop-prometheus-$PROMETHEUS_MODULE_VERSION"

if [ ! -x "$PROMETHEUS" ]; then
  GO=$(command -v go || true)
  if [ -z "$GO" ] && [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; fi
  if [ -z "$GO" ]; then
    echo "[prometheus] Go is needed once to build Prometheus $PROMETHEUS_RELEASE: install Go >= 1.26" \
      "(https://go.dev/dl) and re-run .ci/setup" >&2
    exit 1
  fi
  echo "[prometheus] building $(basename "$PROMETHEUS") (first time only, minutes)"
  mkdir -p "$BIN_DIR"
  # The module's own source, go.mod and go.sum, fetched through the Go module proxy and checked against the
  # checksum database. `go install ...@version` refuses it (its go.mod has a replace directive), so it is
  # built in place: GOWORK=off ignores its go.work (which names directories the module zip leaves out),
  # -mod=readonly keeps its go.sum as it is; the module cache is read-only and the binary goes to BIN_DIR.
  src=$(cd / && GOFLAGS= "$GO" mod download -json "github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  if [ ! -f "$src/cmd/prometheus/main.go" ]; then
    echo "[prometheus] go mod download gave no source for github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION" >&2
    exit 1
  fi
  tmp="$PROMETHEUS.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  VERSION_PKG=github.com/prometheus/common/version
  (cd "$src" && GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" "$GO" build -trimpath -tags remove_all_sd \
    -ldflags="-X $VERSION_PKG.Version=$PROMETHEUS_RELEASE -X $VERSION_PKG.Branch=module-$PROMETHEUS_MODULE_VERSION" \
    -o "$tmp" ./cmd/prometheus)
  mv "$tmp" "$PROMETHEUS"
fi
# Older builds are dead weight (~100 MB each).
find "$BIN_DIR" -maxdepth 1 -name 'driftloop-prometheus-v*' ! -name "$(basename "$PROMETHEUS")" -delete
echo "[prometheus] ready: $("$PROMETHEUS" --version 2>&1 | head -1)"
