"""Fixtures of the local-runtime tests: the echo canary deployment on real MLServer processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from driftloop_graphs.manifest import load_manifests
from driftloop_graphs.request_log import RequestLogSettings
from driftloop_graphs.runtime import LocalRuntime, RuntimeSettings
from driftloop_graphs.spec import Deployment

from driftloop.eventlog import MemoryEventLog
from tests.graphs.runtime_thread import RuntimeThread

HERE = Path(__file__).parent
REPO_ROOT = HERE.parent.parent
ECHO_CANARY = HERE / "manifests" / "echo-canary.yaml"
ECHO_SPLIT = HERE / "manifests" / "echo-split.yaml"


def echo_settings(run_dir: Path, **overrides: object) -> RuntimeSettings:
    settings = RuntimeSettings(
        models_root=HERE / "models",
        run_dir=run_dir,
        mlserver_env={"PYTHONPATH": str(REPO_ROOT)},
    )
    for key, value in overrides.items():
        setattr(settings, key, value)
    return settings


@pytest.fixture(scope="module")
def echo_canary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeThread]:
    """The echo canary manifest (main 90 / canary 10 / shadow) served by a real local runtime."""
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("DRIFTLOOP_HOME", str(home))
    deployments = [Deployment.from_doc(doc) for doc in load_manifests(ECHO_CANARY)]
    log = MemoryEventLog()
    runtime = LocalRuntime(
        deployments,
        echo_settings(home / "run", request_log=RequestLogSettings(queue_size=100_000)),
        log,
    )
    try:
        with RuntimeThread(runtime) as thread:
            yield thread
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def echo_split(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[RuntimeThread]:
    """The echo split manifest (main 90 / canary 10, one node each) logging to the real Kafka broker
    on a fresh topic; a small log queue so bursts meet the overload policy."""
    from driftloop.eventlog.kafka import KafkaEventLog
    from tests.fixtures.kafka import quick_kafka_settings, unique_topic

    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("DRIFTLOOP_HOME", str(home))
    topic = unique_topic("seldon")
    docs = load_manifests(ECHO_SPLIT)
    for predictor in docs[0]["spec"]["predictors"]:
        predictor["svcOrchSpec"] = {"env": [{"name": "LOGGER_KAFKA_TOPIC", "value": topic}]}
    deployments = [Deployment.from_doc(doc) for doc in docs]
    log = KafkaEventLog(kafka_bootstrap, quick_kafka_settings())
    runtime = LocalRuntime(
        deployments,
        echo_settings(home / "run", request_log=RequestLogSettings(queue_size=64, block_timeout_s=30.0)),
        log,
    )
    try:
        with RuntimeThread(runtime) as thread:
            yield thread
    finally:
        log.close()
        mp.undo()


ECHO_SINGLE = HERE / "manifests" / "echo-single.yaml"


@pytest.fixture(scope="module")
def echo_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeThread]:
    """One predictor, one logged node (the ingress's callback path) on a real MLServer, logging to an
    in-memory event log."""
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("DRIFTLOOP_HOME", str(home))
    deployments = [Deployment.from_doc(doc) for doc in load_manifests(ECHO_SINGLE)]
    runtime = LocalRuntime(deployments, echo_settings(home / "run"), MemoryEventLog())
    try:
        with RuntimeThread(runtime) as thread:
            yield thread
    finally:
        mp.undo()
