"""Shared pytest plumbing. Fixtures live in tests/fixtures/<area>.py, one module per real system."""

import os
from pathlib import Path

import pytest

# MLflow's telemetry (on outside CI) fetches its config in a thread; with no network that fails and the thread
# pops _MLFLOW_TELEMETRY_SESSION_ID from os.environ while a REST call's `requests` iterates os.environ for
# proxies: KeyError in MlflowClient calls (seen in tests/loop/test_mlflow_server.py). Set before any import.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

pytest_plugins = [
    "tests.fixtures.kube",
    "tests.fixtures.kafka",
    "tests.fixtures.mlserver",
    "tests.fixtures.mlflow_server",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repository (ELEC2, NAB); tests may read it, never copy it in."""
    if not SHARED_DATA.is_dir():
        raise RuntimeError(f"{SHARED_DATA} not found: the tests expect ../shared beside the repository")
    return SHARED_DATA


@pytest.fixture()
def driftloop_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated DRIFTLOOP_HOME for one test."""
    home = tmp_path / "driftloop-home"
    home.mkdir()
    monkeypatch.setenv("DRIFTLOOP_HOME", str(home))
    os.environ.pop("DRIFTLOOP_MLFLOW_TRACKING_URI", None)
    return home
