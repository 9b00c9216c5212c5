"""The feedback API over real HTTP (uvicorn on 127.0.0.1): chunked bodies over the cap, and one
request never blocking another."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import httpx
import pytest
from driftloop_feedback.api import FeedbackSettings
from pydantic import SecretStr

from driftloop.eventlog import Delivery, MemoryEventLog, Producer
from tests.feedback.api_server import running_api

pytestmark = pytest.mark.integration

TOKEN = "s3cr3t-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class GatedProducer:
    """A producer whose sends of one key wait at a gate: the test knows that request is mid-write."""

    def __init__(self, inner: Producer, key: bytes) -> None:
        self.inner = inner
        self.key = key
        self.reached = threading.Event()
        self.open = threading.Event()

    def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | str]] = (),
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> Delivery:
        if key == self.key:
            self.reached.set()
            assert self.open.wait(30), "the test never opened the gate"
        return self.inner.send(topic, value, key=key, headers=headers, partition=partition)

    def flush(self, timeout_s: float | None = None) -> None:
        self.inner.flush(timeout_s)

    def close(self) -> None:
        self.inner.close()


class GatedLog(MemoryEventLog):
    def __init__(self, key: bytes) -> None:
        super().__init__()
        self.gate = GatedProducer(super().producer(), key)

    def producer(self) -> Producer:
        return self.gate


def keys_in_topic(log: MemoryEventLog) -> list[bytes | None]:
    consumer = log.consumer("check", ["driftloop.feedback"])
    keys = [r.key for r in consumer.poll(timeout_s=0, max_records=1_000_000)]
    consumer.close()
    return keys


def test_a_chunked_body_over_the_cap_is_413() -> None:
    settings = FeedbackSettings(token=SecretStr(TOKEN), max_body_bytes=64 * 1024)

    def chunks() -> Iterator[bytes]:
        yield b'{"records": ['
        for i in range(5_000):
            yield b'{"request_id": "r%d", "truth": 1.0},' % i
        yield b'{"request_id": "last", "truth": 1.0}]}'

    with running_api(settings) as api:
        response = httpx.post(f"{api.url}/v1/feedback", content=chunks(), headers=AUTH, timeout=30)
        assert response.status_code == 413, response.text
        assert response.json()["code"] == "body_too_large" and "MAX_BODY_BYTES" in response.json()["error"]
        stats = httpx.get(f"{api.url}/v1/feedback/stats", headers=AUTH).json()
        assert stats["refused"] == {"413": 1}
        assert keys_in_topic(api.log) == []


def test_a_request_mid_write_does_not_block_a_small_one() -> None:
    """Issue 12, class 4: while a large request is being written (held at a gate in the producer), a
    small request from another client is answered; the large one completes once the gate opens."""
    log = GatedLog(key=b"big")
    settings = FeedbackSettings(token=SecretStr(TOKEN), partitions=1)
    with running_api(settings, log) as api:
        big: list[httpx.Response] = []
        sender = threading.Thread(
            target=lambda: big.append(
                httpx.post(
                    f"{api.url}/v1/feedback",
                    json={"request_id": "big", "truth": [float(i) for i in range(10_000)]},
                    headers=AUTH,
                    timeout=60,
                )
            )
        )
        sender.start()
        try:
            assert log.gate.reached.wait(30), "the large request never reached the log"
            small = httpx.post(
                f"{api.url}/v1/feedback", json={"request_id": "small", "truth": 1.0}, headers=AUTH, timeout=10
            )
            assert small.status_code == 200 and small.json()["accepted"] == 1
            assert keys_in_topic(log) == [b"small"]  # answered while the large one is still held
            assert not big
        finally:
            log.gate.open.set()
            sender.join(60)
        assert big[0].status_code == 200 and big[0].json()["accepted"] == 10_000
        assert keys_in_topic(log).count(b"big") == 10_000


def test_the_same_records_sent_concurrently_are_written_once() -> None:
    """Two requests carrying the same rows at once: the second waits for the first's write instead of
    writing them again, and reports them as duplicates."""
    log = GatedLog(key=b"shared")
    settings = FeedbackSettings(token=SecretStr(TOKEN), partitions=1)
    body = {"records": [{"request_id": "shared", "truth": [1.0, 2.0]}, {"request_id": "own", "truth": 3.0}]}
    with running_api(settings, log) as api:
        answers: list[httpx.Response] = []

        def send() -> None:
            answers.append(httpx.post(f"{api.url}/v1/feedback", json=body, headers=AUTH, timeout=60))

        first = threading.Thread(target=send)
        first.start()
        assert log.gate.reached.wait(30)
        second = threading.Thread(target=send)
        second.start()
        second.join(0.5)  # the second request waits for the first's write
        assert second.is_alive() and not answers
        log.gate.open.set()
        first.join(60)
        second.join(60)
    assert sorted((a.status_code, a.json()["accepted"], a.json()["duplicates"]) for a in answers) == [
        (200, 0, 3),
        (200, 3, 0),
    ]
    assert sorted(keys_in_topic(log)) == [b"own", b"shared", b"shared"]


def test_one_record_with_many_truth_rows_is_handled_in_linear_time() -> None:
    """Issue 12, class 4: 40k truth rows in one record (the old in-request duplicate check scanned a
    list: quadratic, ~minutes here). A generous bound: the whole round trip within 20 s."""
    settings = FeedbackSettings(token=SecretStr(TOKEN), max_rows=40_000, partitions=1)
    with running_api(settings) as api:
        response = httpx.post(
            f"{api.url}/v1/feedback",
            json={"request_id": "wide", "truth": [float(i) for i in range(40_000)]},
            headers=AUTH,
            timeout=20,
        )
        assert response.status_code == 200 and response.json()["accepted"] == 40_000
