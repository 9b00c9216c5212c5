"""The feedback API in-process (in-memory log): auth, validation, caps, idempotent resend, big batch."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from driftloop_feedback.api import FeedbackSettings, create_app
from driftloop_feedback.records import TruthRecord, decode_feedback
from pydantic import SecretStr, ValidationError

from driftloop.eventlog import MemoryEventLog

TOKEN = "s3cr3t-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def log() -> MemoryEventLog:
    return MemoryEventLog()


def in_memory_client(settings: FeedbackSettings, log: MemoryEventLog) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings, log))
    return httpx.AsyncClient(transport=transport, base_url="http://feedback")


@pytest.fixture()
async def client(log: MemoryEventLog) -> AsyncIterator[httpx.AsyncClient]:
    settings = FeedbackSettings(token=SecretStr(TOKEN), max_body_bytes=2 * 1024 * 1024, partitions=2)
    async with in_memory_client(settings, log) as c:
        yield c


def topic_records(log: MemoryEventLog) -> list:
    consumer = log.consumer("check", ["driftloop.feedback"])
    out = consumer.poll(timeout_s=0, max_records=100_000)
    consumer.close()
    return out


async def test_401_without_or_with_wrong_token(client: httpx.AsyncClient) -> None:
    body = {"request_id": "r1", "truth": 1.0}
    assert (await client.post("/v1/feedback", json=body)).status_code == 401
    wrong = await client.post("/v1/feedback", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "DRIFTLOOP_FEEDBACK_TOKEN" in wrong.json()["error"]
    assert (await client.post("/v1/feedback", json=body, headers=AUTH)).status_code == 200


def test_production_refuses_placeholder_or_empty_token() -> None:
    for token in ("", "changeme", "short"):
        with pytest.raises(ValidationError, match="DRIFTLOOP_FEEDBACK_TOKEN"):
            FeedbackSettings(mode="production", token=SecretStr(token))
    FeedbackSettings(mode="production", token=SecretStr(TOKEN))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"request_id": "", "truth": 1.0}, "request_id"),
        ({"request_id": "r1", "truth": "hot"}, "truth"),
        ({"request_id": "r1", "truth": []}, "truth"),
        ({"asset_id": "pump-01", "event_time": 1.0, "values": {}}, "values"),
        ({"asset_id": "pump-01", "values": {"bearing_temp": 60.0}}, "event_time"),
        ({"records": []}, "records"),
        ({"request_id": "r1", "truth": 1.0, "colour": "red"}, "colour"),
        ({"records": [{"request_id": "r1", "truth": [1, 2]}, {"request_id": "r2", "truth": 1.5}]}, None),
        (
            {"records": [{"request_id": "X", "truth": [1, 2]}, {"request_id": "Y", "truth": 1, "row": -1}]},
            "records[1].row",
        ),
        (
            {"records": [{"request_id": "X", "truth": 1}, {"request_id": "Y", "truth": "hot"}]},
            "records[1].truth",
        ),
        ({"records": [{"request_id": "X", "truth": [1, "a"]}]}, "records[0].truth[1]"),
        ({"records": [{"asset_id": "p", "event_time": 1, "values": {"t": "a"}}]}, 'records[0].values["t"]'),
        ({"records": [{"request_id": "X", "truth": [1], "row": 0}]}, "records[0].row"),
        ({"records": [{"colour": "red"}]}, "records[0]"),
        ([1, 2], ""),
    ],
)
async def test_422_names_the_field_by_its_documented_path(
    client: httpx.AsyncClient, body: object, field: str | None
) -> None:
    """The field is named as docs/feedback.md writes it, not by pydantic's union branches."""
    response = await client.post("/v1/feedback", json=body, headers=AUTH)
    if field is None:
        assert response.status_code == 200
        return
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "invalid_body"
    assert [f["field"] for f in error["fields"]] == [field], error
    assert "<" not in error["error"] and "TruthByPrediction" not in response.text


async def test_nan_truth_is_422(client: httpx.AsyncClient) -> None:
    raw = '{"request_id": "r1", "truth": NaN}'
    response = await client.post(
        "/v1/feedback", content=raw, headers={**AUTH, "content-type": "application/json"}
    )
    assert response.status_code == 422


async def test_payload_cap_is_413_and_nothing_written(client: httpx.AsyncClient, log: MemoryEventLog) -> None:
    body = {"records": [{"request_id": f"r{i}" + "x" * 200, "truth": 1.0} for i in range(12_000)]}
    response = await client.post("/v1/feedback", json=body, headers=AUTH)
    assert response.status_code == 413 and "MAX_BODY_BYTES" in response.json()["error"]
    assert topic_records(log) == []
    assert (await client.get("/v1/feedback/stats", headers=AUTH)).json()["rejected"] == 1


async def test_row_cap_is_413(log: MemoryEventLog) -> None:
    body = {"records": [{"request_id": f"r{i}", "truth": 1.0} for i in range(4)]}
    async with in_memory_client(FeedbackSettings(token=SecretStr(TOKEN), max_rows=3), log) as client:
        response = await client.post("/v1/feedback", json=body, headers=AUTH)
    assert response.status_code == 413 and "MAX_ROWS" in response.json()["error"]


async def test_resend_is_idempotent_and_reported_duplicate(
    client: httpx.AsyncClient, log: MemoryEventLog
) -> None:
    body = {
        "records": [
            {"request_id": "r1", "truth": [1.0, 2.0]},
            {"asset_id": "p1", "event_time": 5.0, "values": {"bearing_temp": 61.5}},
        ]
    }
    first = (await client.post("/v1/feedback", json=body, headers=AUTH)).json()
    second = (await client.post("/v1/feedback", json=body, headers=AUTH)).json()
    assert (first["accepted"], first["duplicates"]) == (3, 0)
    assert (second["accepted"], second["duplicates"]) == (0, 3)
    assert [r["record_id"] for r in first["records"]] == [r["record_id"] for r in second["records"]]
    records = topic_records(log)
    assert len(records) == 3
    truths = [decode_feedback(r.value) for r in records if r.key == b"r1"]
    assert sorted((t.row, t.truth) for t in truths if isinstance(t, TruthRecord)) == [(0, 1.0), (1, 2.0)]
    stats = (await client.get("/v1/feedback/stats", headers=AUTH)).json()
    assert (stats["accepted"], stats["duplicates"]) == (3, 3)


async def test_10k_record_batch_written_before_the_answer(
    client: httpx.AsyncClient, log: MemoryEventLog
) -> None:
    body = {"records": [{"request_id": f"req-{i}", "truth": float(i)} for i in range(10_000)]}
    response = await client.post("/v1/feedback", json=body, headers=AUTH)
    assert response.status_code == 200 and response.json()["accepted"] == 10_000
    records = topic_records(log)
    assert len(records) == 10_000
    assert {json.loads(r.value)["request_id"] for r in records} == {f"req-{i}" for i in range(10_000)}


async def test_health_and_metrics_need_no_token(client: httpx.AsyncClient) -> None:
    await client.post("/v1/feedback", json={"request_id": "r1", "truth": 1.0}, headers=AUTH)
    assert (await client.get("/health/ready")).json() == {"status": "ok"}
    text = (await client.get("/metrics")).text
    assert 'driftloop_feedback_records_total{outcome="accepted"} 1.0' in text


def error_shape(response: httpx.Response) -> dict:
    """Every answer >= 400 is ``{"error": str, "code": str, "fields": [{"field", "message"}]}``."""
    body = response.json()
    assert set(body) == {"error", "code", "fields"}, body
    assert isinstance(body["error"], str) and body["error"] and isinstance(body["code"], str)
    assert all(set(f) == {"field", "message"} for f in body["fields"])
    assert "Traceback" not in response.text
    return body


async def test_a_batch_with_one_bad_number_writes_nothing_and_names_the_field(
    client: httpx.AsyncClient, log: MemoryEventLog
) -> None:
    """Issue 12, class 3: the second record's row is out of range: 422 naming records[1].row, X is not
    written; the corrected resend writes X once, and a second resend writes nothing."""
    bad = {"records": [{"request_id": "X", "truth": [1, 2]}, {"request_id": "Y", "truth": 1, "row": 2**70}]}
    response = await client.post("/v1/feedback", json=bad, headers=AUTH)
    assert response.status_code == 422
    assert [f["field"] for f in error_shape(response)["fields"]] == ["records[1].row"]
    assert topic_records(log) == []
    good = {"records": [bad["records"][0], {"request_id": "Y", "truth": 1, "row": 3}]}
    assert (await client.post("/v1/feedback", json=good, headers=AUTH)).json()["accepted"] == 3
    assert (await client.post("/v1/feedback", json=good, headers=AUTH)).json()["duplicates"] == 3
    records = [decode_feedback(r.value) for r in topic_records(log)]
    assert sorted((r.request_id, r.row) for r in records if isinstance(r, TruthRecord)) == [
        ("X", 0),
        ("X", 1),
        ("Y", 3),
    ]


@pytest.mark.parametrize(
    ("raw", "status", "code", "says"),
    [
        (b"\xff", 400, "invalid_encoding", "not UTF-8 (byte 0xff at offset 0)"),
        (b'{"request_id": "r1", "truth": 1.0', 400, "invalid_json", "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, 400, "invalid_json", "recursion limit"),
        (b'{"request_id": "r1", "truth": 1e400}', 422, "invalid_body", "finite number"),
        (b'{"request_id": "r1", "truth": NaN}', 422, "invalid_body", "finite number"),
        (
            b'{"request_id": "r1", "truth": 1, "row": ' + b"9" * 5000 + b"}",
            400,
            "invalid_json",
            "out of range",
        ),
        (b'{"request_id": "r1", "truth": 1, "row": 1180591620717411303424}', 422, "invalid_body", "row"),
        (b'{"request_id": "\\ud800", "truth": 1}', 400, "invalid_json", "hex escape at line 1 column 23"),
    ],
)
async def test_undecodable_bodies_are_refused_saying_why(
    client: httpx.AsyncClient, log: MemoryEventLog, raw: bytes, status: int, code: str, says: str
) -> None:
    response = await client.post(
        "/v1/feedback", content=raw, headers={**AUTH, "content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    body = error_shape(response)
    assert body["code"] == code and says in body["error"], body
    assert topic_records(log) == []


async def test_one_error_shape_for_every_refusal(client: httpx.AsyncClient) -> None:
    answers = [
        await client.post("/v1/feedback", json={"request_id": "r1", "truth": 1.0}),
        await client.get("/v1/feedback/stats"),
        await client.get("/no/such/route"),
        await client.delete("/v1/feedback", headers=AUTH),
        await client.post("/v1/feedback", content=b"\xff", headers=AUTH),
        await client.post("/v1/feedback", json={"records": [{"x": 1}]}, headers=AUTH),
    ]
    assert [a.status_code for a in answers] == [401, 401, 404, 405, 400, 422]
    assert [error_shape(a)["code"] for a in answers] == [
        "unauthorized",
        "unauthorized",
        "not_found",
        "method_not_allowed",
        "invalid_encoding",
        "invalid_body",
    ]


async def test_stats_and_metrics_count_every_refusal(client: httpx.AsyncClient) -> None:
    """400s, 401, 413 and the route's own 422s and 413s are all counted, by status."""
    huge = b'{"records": [' + b",".join([b'{"request_id": "r", "truth": 1.0}'] * 70_000) + b"]}"
    await client.post("/v1/feedback", content=b"{not json", headers=AUTH)  # 400
    await client.post("/v1/feedback", content=b"\xff\xfe", headers=AUTH)  # 400
    await client.post("/v1/feedback", json={"request_id": "r1", "truth": 1.0})  # 401
    await client.post("/v1/feedback", content=huge, headers=AUTH)  # 413 (bytes)
    await client.post("/v1/feedback", json={"request_id": "r1", "truth": [1.0] * 10_001}, headers=AUTH)  # 413
    await client.post("/v1/feedback", json={"request_id": "r1", "truth": "hot"}, headers=AUTH)  # 422
    await client.post("/v1/feedback", json={"request_id": "r1", "truth": 1.0}, headers=AUTH)  # 200
    stats = (await client.get("/v1/feedback/stats", headers=AUTH)).json()
    assert stats["refused"] == {"400": 2, "401": 1, "413": 2, "422": 1}
    assert (stats["rejected"], stats["accepted"], stats["batches"]) == (6, 1, 1)
    text = (await client.get("/metrics")).text
    assert 'driftloop_feedback_refused_total{status="413"} 2.0' in text
    assert 'driftloop_feedback_refused_total{status="400"} 2.0' in text


async def test_a_record_with_more_truth_rows_than_the_cap_is_413(log: MemoryEventLog) -> None:
    """Issue 12, class 4: the cap counts rows: one record with 11 truth values is 11 rows."""
    settings = FeedbackSettings(token=SecretStr(TOKEN), max_rows=10)
    async with in_memory_client(settings, log) as client:
        response = await client.post(
            "/v1/feedback", json={"request_id": "r", "truth": [1.0] * 11}, headers=AUTH
        )
        assert response.status_code == 413
        assert "11 rows" in error_shape(response)["error"] and "MAX_ROWS" in response.json()["error"]
        ok = await client.post("/v1/feedback", json={"request_id": "r", "truth": [1.0] * 10}, headers=AUTH)
        assert ok.status_code == 200
    assert len(topic_records(log)) == 10


async def test_received_at_comes_from_the_injected_clock(log: MemoryEventLog) -> None:
    app = create_app(FeedbackSettings(token=SecretStr(TOKEN)), log, clock=lambda: 1_700_000_000.5)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://feedback") as c:
        await c.post("/v1/feedback", json={"request_id": "r1", "truth": 1.0}, headers=AUTH)
    (record,) = [decode_feedback(r.value) for r in topic_records(log)]
    assert isinstance(record, TruthRecord) and record.received_at == 1_700_000_000.5
