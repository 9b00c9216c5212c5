#!/usr/bin/env bash
# Fetch the Apache Kafka broker's jars (KRaft, single node) from Maven Central for tests, the benchmark
# and `driftloop kafka start`. Cached in ~/.cache/driftloop/kafka-jars/<hash of the pom>; Maven caches the
# downloads in ~/.m2. Does nothing when the jars for this pom are already there.
set -euo pipefail
cd "$(dirname "$0")/../.."

pom=.ci/kafka/pom.xml
key=$(sha256sum "$pom" | cut -c1-16)
cache=${DRIFTLOOP_KAFKA_JARS:-${XDG_CACHE_HOME:-$HOME/.cache}/driftloop/kafka-jars/$key}

if [ -f "$cache/.complete" ]; then
  exit 0
fi
missing=()
command -v java >/dev/null 2>&1 || missing+=(java)
command -v mvn >/dev/null 2>&1 || missing+=(mvn)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] the real Kafka broker used by the tests needs Java 17+ and Maven; missing: ${missing[*]}." >&2
  echo "[setup] install them, e.g. 'apt-get install openjdk-17-jre-headless maven', then run .ci/setup again." >&2
  exit 1
fi
echo "[setup] fetching the Apache Kafka broker jars from Maven Central into $cache (first time ~10-60 s)"
tmp="$cache.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp"
if ! ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1; then
  echo "[setup] Maven finished but no kafka_2.13 jar is in $tmp; check $pom and your Maven settings." >&2
  exit 1
fi
touch "$tmp/.complete"
rm -rf "$cache"
mv "$tmp" "$cache"
echo "[setup] Kafka broker jars ready: $cache ($(ls "$cache" | wc -l) files)"
