"""What a client sees when a model fails inside MLServer: a 500 without MLServer's traceback
(driftloop runs MLServer with ``debug`` off)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from driftloop.mlserver_process import MLServerProcess
from tests.integration.failing_runtime import SECRET_DETAIL

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_a_runtime_error_in_a_model_gives_no_traceback_in_the_body(tmp_path: Path) -> None:
    folder = tmp_path / "repo" / "failing"
    folder.mkdir(parents=True)
    settings = {"name": "failing", "implementation": "tests.integration.failing_runtime.FailingRuntime"}
    (folder / "model-settings.json").write_text(json.dumps(settings))
    server = MLServerProcess(tmp_path / "repo", env={"PYTHONPATH": str(REPO)}, run_dir=tmp_path / "run")
    with server:
        request = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}]}
        response = httpx.post(f"{server.url}/v2/models/failing/infer", json=request, timeout=30)
    assert response.status_code == 500
    assert "Traceback" not in response.text
    assert SECRET_DETAIL not in response.text
    assert 'File "' not in response.text
