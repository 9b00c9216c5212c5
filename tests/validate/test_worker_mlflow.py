"""``driftloop validator run`` as a process on a real MLflow sqlite store and the embedded event log: a
champion and a better challenger registered, labelled examples written to the topic by another process,
the ``pass`` verdict written with no manual step, counted on /metrics; SIGTERM stops it after saving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from driftloop.eventlog.embedded import EmbeddedEventLog
from driftloop.registry import MlflowRegistry
from driftloop.settings import StateSettings
from tests.validate.worker_helpers import NAME, TOPIC, VERDICT, labelled, regressor

pytestmark = pytest.mark.integration


def _register(home: Path) -> MlflowRegistry:
    state = StateSettings(home=home, mlflow_tracking_uri=None)
    registry = MlflowRegistry(state.tracking_uri(), state.artifact_root())
    example = np.zeros((2, 2))
    for model, alias in [(regressor(1.0, 30), "champion"), (regressor(2.0, 31), "challenger")]:
        registry.register_sklearn_model(
            NAME, model, input_example=example, pip_requirements=["scikit-learn"], alias=alias
        )
    return registry


def _produce(log: EmbeddedEventLog, n: int, seed: int, prefix: str) -> None:
    log.create_topic(TOPIC, 1)
    producer = log.producer()
    for e in labelled(n, seed, prefix=prefix):
        producer.send(TOPIC, e.encode(), key=e.request_id.encode())
    producer.flush()
    producer.close()


def test_driftloop_validator_run_as_a_process(tmp_path: Path) -> None:
    home = tmp_path / "home"
    registry = _register(home)
    env = {
        **os.environ,
        "DRIFTLOOP_HOME": str(home),
        "DRIFTLOOP_VALIDATION_LOSS_BOUND": "5",
        "DRIFTLOOP_VALIDATOR_REGISTRY_POLL_S": "0.5",
    }
    env.pop("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("DRIFTLOOP_MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "driftloop"), "validator", "run", "--metrics-port", "0"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        port = None
        deadline = time.monotonic() + 60.0
        while port is None:
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            line = proc.stdout.readline()
            lines.append(line)
            if "metrics on http://127.0.0.1:" in line:
                port = int(line.split("127.0.0.1:")[1].split("/")[0])
        log = EmbeddedEventLog(home / "eventlog")  # the writer side: another process on the same home
        try:
            _produce(log, 600, 33, "p")
        finally:
            log.close()
        while VERDICT not in registry.version_tags(NAME, 2):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            time.sleep(0.2)
        counted = 'driftloop_validator_verdicts_total{verdict="pass"} 1.0'
        text = ""
        while counted not in text:  # counted once every tag and run metric is written
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                text = response.read().decode()
        assert "driftloop_validator_rows_scored_total" in text
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        lines.append(out)
    assert proc.returncode == 0, "".join(lines)
    output = "".join(lines)
    assert "validator stopped" in output and "PASS" in output, output
    tags = registry.version_tags(NAME, 2)
    assert tags[VERDICT] == "pass" and float(tags["driftloop.validation.upper"]) < 0.0
    assert tags["driftloop.validation.champion_version"] == "1"
    assert VERDICT not in registry.version_tags(NAME, 1)
    ref = registry.get_alias(NAME, "challenger")
    assert ref.run_id is not None
    assert registry.run_data(ref.run_id)[1]["driftloop.validation.n"] == float(tags["driftloop.validation.n"])
    assert (home / "validator" / f"{NAME}.state").exists()
