#!/usr/bin/env bash
# The Prometheus Operator's PodMonitor CRD for the full kube-apiserver of the tests
# (docs/kubernetes-testing.md): the YAML the Prometheus Operator's release installs, copied unchanged from
# its own repository as the Go module proxy serves it (module github.com/prometheus-operator/prometheus-operator,
# Apache-2.0; `go mod download` checks the zip against the checksum database), file
# example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml.
#   - the CRD: ~/.cache/driftloop/prometheus-operator-crds/<version>/monitoring.coreos.com_podmonitors.yaml,
#     where driftloop.kube.full_apiserver.podmonitor_crd_path() finds it
#     ($DRIFTLOOP_PROMETHEUS_OPERATOR_CRDS overrides the dir).
# The manifests use only PodMonitor, so only that CRD is copied. Idempotent: does nothing when the CRD for
# this version is there.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Same value as driftloop/kube/full_apiserver.py (PROMETHEUS_OPERATOR_VERSION).
PROMETHEUS_OPERATOR_VERSION=v0.85.0
MODULE=github.com/prometheus-operator/prometheus-operator
CRD_FILE=monitoring.coreos.com_podmonitors.yaml
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/driftloop
OUT_DIR=${DRIFTLOOP_PROMETHEUS_OPERATOR_CRDS:-$CACHE/prometheus-operator-crds/$PROMETHEUS_OPERATOR_VERSION}
CRD=$OUT_DIR/$CRD_FILE

if [ -s "$CRD" ]; then
  echo "[prometheus-operator] ready: $CRD"
  exit 0
fi
GO=$(command -v go || true)
if [ -z "$GO" ] && [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; fi
if [ -z "$GO" ]; then
  echo "[prometheus-operator] Go is needed to fetch the PodMonitor CRD from the Go module proxy: install Go" \
    "(https://go.dev/dl) and re-run .ci/setup" >&2
  exit 1
fi
echo "[prometheus-operator] fetching $MODULE@$PROMETHEUS_OPERATOR_VERSION through the Go module proxy"
src=$(cd / && GOFLAGS= "$GO" mod download -json "$MODULE@$PROMETHEUS_OPERATOR_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
found=$src/example/prometheus-operator-crd/$CRD_FILE
if [ -z "$src" ] || [ ! -s "$found" ]; then
  echo "[prometheus-operator] go mod download gave no $CRD_FILE for $MODULE@$PROMETHEUS_OPERATOR_VERSION" \
    "(looked for ${found})" >&2
  exit 1
fi
mkdir -p "$OUT_DIR"
tmp=$(mktemp "$OUT_DIR/.tmp.XXXXXX")
trap 'rm -f "$tmp"' EXIT
{
  echo "# The Prometheus Operator's PodMonitor CRD (Apache-2.0), copied unchanged by"
  echo "# .ci/setup.d/prometheus-operator-crds.sh from Go module $MODULE@$PROMETHEUS_OPERATOR_VERSION,"
  echo "# example/prometheus-operator-crd/$CRD_FILE"
  cat "$found"
} > "$tmp"
mv "$tmp" "$CRD"
trap - EXIT
echo "[prometheus-operator] ready: $CRD"
