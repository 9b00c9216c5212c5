"""A worker that cannot use the state store it is told to stops at start with a one-line error naming
the setting to change, no traceback: the log store on the embedded log, a state topic that is not
compacted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from driftloop.eventlog.kafka import KafkaEventLog
from tests.fixtures.kafka import quick_kafka_settings, unique_topic

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
    return subprocess.run(
        [sys.executable, "-m", "driftloop", *args],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_log_store_on_the_embedded_log_is_refused_in_one_line(tmp_path: Path) -> None:
    result = run(["feedback", "join"], {"DRIFTLOOP_HOME": str(tmp_path), "DRIFTLOOP_STATE_STORE": "log"})
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "Error: DRIFTLOOP_STATE_STORE=log keeps state in a compacted Kafka topic" in result.stderr
    assert "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS" in result.stderr


def test_a_state_topic_that_is_not_compacted_stops_the_joiner(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = unique_topic("state")
    log = KafkaEventLog(kafka_bootstrap, quick_kafka_settings())
    try:
        log.create_topic(topic, 1)  # cleanup.policy=delete
    finally:
        log.close()
    env = {
        "DRIFTLOOP_HOME": str(tmp_path),
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DRIFTLOOP_STATE_STORE": "log",
        "DRIFTLOOP_STATE_TOPIC": topic,
        "DRIFTLOOP_JOINER_GROUP_ID": f"joiner-{topic}",
    }
    result = run(["feedback", "join"], env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"state topic {topic} on {kafka_bootstrap} has cleanup.policy=delete, not compact" in result.stderr
