"""Property-based fuzz of the ingress on real MLServer processes: generated V2 bodies and headers,
valid and broken, through the one-node callback path and a two-node chain. No 5xx (every node is up),
every error body is JSON of the one error shape, every valid request is answered 200.

``DRIFTLOOP_FUZZ_EXAMPLES`` raises the example count (CI: 150 per graph); with
``DRIFTLOOP_FUZZ_REPORT=1`` the test only counts statuses per class and prints them (a survey)."""

from __future__ import annotations

import collections
import os

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from tests.graphs.runtime_thread import RuntimeThread
from tests.graphs.v2_strategies import Example, examples

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("DRIFTLOOP_FUZZ_EXAMPLES", "150"))
REPORT = os.environ.get("DRIFTLOOP_FUZZ_REPORT") == "1"


def assert_error_shape(status: int, body: bytes) -> None:
    message = orjson.loads(body)
    assert isinstance(message, dict) and set(message) == {"error", "code"}, (status, body[:300])
    assert isinstance(message["error"], str) and message["error"], (status, body[:300])
    assert isinstance(message["code"], str) and message["code"], (status, body[:300])
    assert "Traceback" not in message["error"], (status, body[:300])


@pytest.mark.parametrize("graph", ["echo_single", "echo_canary"])
def test_generated_requests_never_get_a_5xx_and_errors_have_one_shape(
    graph: str, request: pytest.FixtureRequest
) -> None:
    rt: RuntimeThread = request.getfixturevalue(graph)
    url = f"{rt.runtime.url(rt.runtime.deployments[0])}/v2/models/infer"
    seen: collections.Counter[tuple[str, int]] = collections.Counter()

    with httpx.Client(timeout=30) as client:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(example=examples())
        def check(example: Example) -> None:
            response = client.post(url, content=example.body, headers=example.headers)
            seen[(example.kind, response.status_code)] += 1
            if REPORT:
                return
            assert response.status_code < 500, (example, response.status_code, response.content[:500])
            if example.kind == "valid":
                assert response.status_code == 200, (example, response.content[:500])
            if response.status_code != 200:
                assert_error_shape(response.status_code, response.content)
                assert example.body[:64] not in response.content or len(example.body) < 8

        check()
    if REPORT:
        print(f"\n{graph}: " + ", ".join(f"{k}:{s}={n}" for (k, s), n in sorted(seen.items())))
