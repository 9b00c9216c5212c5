"""``driftloop kafka start/status/stop`` against a real broker process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from driftloop.cli import cli
from driftloop.eventlog.broker import is_broker_process, stop_pid
from driftloop.eventlog.kafka import KafkaEventLog
from tests.fixtures.kafka import quick_kafka_settings


@pytest.mark.integration
def test_start_status_stop_a_local_broker(driftloop_home: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["kafka", "status"])
    assert result.exit_code == 1
    assert "not running" in result.output
    result = runner.invoke(cli, ["kafka", "start", "--port", "0"])
    assert result.exit_code == 0, result.output
    state = json.loads((driftloop_home / "run" / "kafka.json").read_text())
    try:
        assert f"export DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS={state['bootstrap_servers']}" in result.output
        log = KafkaEventLog(state["bootstrap_servers"], quick_kafka_settings())
        log.create_topic("cli.check")
        assert log.partitions_for("cli.check") == 1
        log.close()
        result = runner.invoke(cli, ["kafka", "status"])
        assert result.exit_code == 0
        assert "accepting connections" in result.output
        result = runner.invoke(cli, ["kafka", "start", "--port", "0"])
        assert "already running" in result.output
        result = runner.invoke(cli, ["kafka", "stop"])
        assert result.exit_code == 0
        assert "stopped Kafka" in result.output
        assert not is_broker_process(state["pid"])
    finally:
        stop_pid(state["pid"])  # no-op when the test got that far


def test_help_explains_the_commands() -> None:
    result = CliRunner().invoke(cli, ["kafka", "--help"])
    assert result.exit_code == 0
    assert "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS" in result.output
    for command in ("start", "status", "stop"):
        assert command in result.output
