#!/usr/bin/env bash
# Fetch the Apache Kafka broker's jars (KRaft, single node) from Maven Central for tests, the benchmark
# and `driftloop kafka start`. The dependency list ships in the package (driftloop/eventlog/
# kafka-broker-pom.xml); the jars are cached in ~/.cache/driftloop/kafka-jars/<hash of the pom> and Maven
# caches the downloads in ~/.m2. One implementation: driftloop.eventlog.broker.fetch_jars. Does nothing
# when the jars for this pom are already there.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
"$VENV/bin/python" - <<'PY'
import sys

from driftloop.eventlog.broker import BrokerError, fetch_jars, jars_dir

try:
    jars_dir()
except BrokerError:
    print("[setup] fetching the Apache Kafka broker jars from Maven Central (first time ~10-60 s)", flush=True)
    try:
        path = fetch_jars()
    except BrokerError as exc:
        print(f"[setup] {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"[setup] Kafka broker jars ready: {path}")
PY
