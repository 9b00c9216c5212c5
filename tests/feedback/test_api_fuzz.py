"""Fuzzing the feedback API over real HTTP (uvicorn on 127.0.0.1, in-memory event log read back):

- schemathesis generates requests from the app's own OpenAPI document (valid and invalid bodies);
- hypothesis sends sequences of batches, valid and hostile (huge integers, non-finite numbers, wrong
  types, repeated ids), and checks the log after every answer.

Asserted for every answer: no 5xx; every answer >= 400 has the one error shape; nothing accepted is
lost (each accepted record is in the topic) and nothing is written twice (each record id once)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from driftloop_feedback.api import FeedbackSettings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from driftloop.eventlog import Consumer, MemoryEventLog
from tests.feedback.api_server import RunningApi, running_api

pytestmark = pytest.mark.integration

TOKEN = "s3cr3t-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TOPIC = "driftloop.feedback"


class TopicLedger:
    """What the API has written, read back from the log after each answer."""

    def __init__(self, log: MemoryEventLog) -> None:
        self.consumer: Consumer = log.consumer("fuzz-check", [TOPIC])
        self.ids: set[str] = set()

    def read_new(self) -> list[str]:
        new = [json.loads(r.value)["record_id"] for r in self.consumer.poll(timeout_s=0, max_records=10**6)]
        twice = [rid for rid in new if rid in self.ids] + [rid for rid in set(new) if new.count(rid) > 1]
        assert not twice, f"written twice: {twice[:5]}"
        self.ids.update(new)
        return new


@pytest.fixture(scope="module")
def api() -> Iterator[RunningApi]:
    settings_ = FeedbackSettings(token=SecretStr(TOKEN), partitions=2, max_body_bytes=256 * 1024)
    with running_api(settings_) as running:
        yield running


@pytest.fixture(scope="module")
def topic(api: RunningApi) -> TopicLedger:
    return TopicLedger(api.log)


def assert_answer(response: httpx.Response | Any, topic: TopicLedger) -> None:
    """No 5xx; errors have one shape and wrote nothing; accepted records are in the log once."""
    status = response.status_code
    assert status < 500, response.text
    new = topic.read_new()
    if status >= 400:
        body = response.json()
        assert set(body) == {"error", "code", "fields"} and isinstance(body["error"], str), body
        assert all(set(f) == {"field", "message"} for f in body["fields"]), body
        assert "Traceback" not in response.text
        assert new == [], "a refused request wrote records"
    elif status == 200 and response.request.method == "POST":
        answer = response.json()
        accepted = [r["record_id"] for r in answer["records"] if r["status"] == "accepted"]
        duplicates = [r["record_id"] for r in answer["records"] if r["status"] == "duplicate"]
        assert sorted(new) == sorted(accepted), "accepted records missing from the log, or extra ones"
        assert all(rid in topic.ids for rid in duplicates), "a 'duplicate' that was never written"


@pytest.fixture(scope="module")
def api_schema(api: RunningApi) -> Any:
    return schemathesis.openapi.from_url(f"{api.url}/openapi.json")


POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
OPERATIONS = [  # negative cases need something to break: the health routes take no input
    ("/v1/feedback", "POST", POSITIVE),
    ("/v1/feedback", "POST", NEGATIVE),
    ("/v1/feedback/stats", "GET", POSITIVE),
    ("/v1/feedback/stats", "GET", NEGATIVE),
    ("/health/ready", "GET", POSITIVE),
    ("/metrics", "GET", POSITIVE),
]


@pytest.mark.parametrize(("path", "method", "mode"), OPERATIONS)
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_schemathesis_cases_from_the_openapi_document(
    data: st.DataObject,
    path: str,
    method: str,
    mode: schemathesis.GenerationMode,
    api_schema: Any,
    api: RunningApi,
    topic: TopicLedger,
) -> None:
    """Cases drawn from the served /openapi.json (schemathesis' strategies; its pytest plugin's lazy
    loader does not run on this pytest), checked by schemathesis and by ``assert_answer``."""
    case = data.draw(api_schema[path][method].as_strategy(generation_mode=mode))
    response = case.call(base_url=api.url, headers=AUTH, timeout=30)
    case.validate_response(response, headers=AUTH)
    assert_answer(response, topic)


# -- hypothesis: batches -------------------------------------------------------------------------

request_ids = st.sampled_from(["a", "b", "c", "pump-01/req-7"]) | st.text(min_size=0, max_size=8)
hostile_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(10**400),
    st.sampled_from([True, "1.5", None, [], {}]),
)
good_numbers = st.floats(allow_nan=False, allow_infinity=False, width=64) | st.integers(-(2**40), 2**40)
numbers = good_numbers | hostile_numbers
truth_by_row = st.fixed_dictionaries({"request_id": request_ids, "truth": numbers}, optional={"row": numbers})
truth_rows = st.fixed_dictionaries({"request_id": request_ids, "truth": st.lists(numbers, max_size=6)})
reading = st.fixed_dictionaries(
    {
        "asset_id": request_ids,
        "event_time": numbers,
        "values": st.dictionaries(st.text(max_size=6), numbers, max_size=3),
    }
)
odd_record = st.dictionaries(
    st.sampled_from(["request_id", "truth", "asset_id", "colour"]), numbers, max_size=3
)
records = st.one_of(truth_by_row, truth_rows, reading, odd_record, numbers)
bodies = st.one_of(st.fixed_dictionaries({"records": st.lists(records, max_size=6)}), records)


def dumps(body: object) -> bytes:
    """JSON as a hostile client writes it: NaN/Infinity literals and integers of any size."""
    return json.dumps(body, allow_nan=True).encode()


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(batches=st.lists(bodies, min_size=1, max_size=4))
def test_batches_are_all_or_nothing_and_never_written_twice(
    batches: list[object], api: RunningApi, topic: TopicLedger
) -> None:
    with httpx.Client(base_url=api.url, headers=AUTH, timeout=30) as client:
        for body in [*batches, *batches]:  # every batch sent twice: a resend writes nothing again
            response = client.post(
                "/v1/feedback", content=dumps(body), headers={"content-type": "application/json"}
            )
            assert_answer(response, topic)
            if response.status_code == 200:
                assert all(_finite(body)), "a non-finite number was accepted"


def _finite(body: object) -> Iterator[bool]:
    if isinstance(body, float):
        yield math.isfinite(body)
    elif isinstance(body, dict):
        for value in body.values():
            yield from _finite(value)
    elif isinstance(body, list):
        for value in body:
            yield from _finite(value)


def test_the_fuzzed_api_still_counts_what_it_did(api: RunningApi, topic: TopicLedger) -> None:
    """After the fuzzing above: the stats agree with the log."""
    topic.read_new()
    stats = httpx.get(f"{api.url}/v1/feedback/stats", headers=AUTH).json()
    assert stats["accepted"] == len(topic.ids)
    assert stats["rejected"] == sum(stats["refused"].values()) > 0
