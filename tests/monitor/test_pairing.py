"""Pairing the model node's request and response: duplicates, other nodes, bad payloads and requests
whose response never comes are each counted by reason."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from driftloop_feedback.monitor.pairing import CallPairer, UnusablePayload

from driftloop.seldon_log import TYPE_FEEDBACK, LogEvent
from tests.monitor.streams import call_events


def _pairer(**kw: object) -> CallPairer:
    return CallPairer(model_node="bearing-temp", **kw)  # type: ignore[arg-type]


def test_pairs_the_model_nodes_request_with_its_response() -> None:
    x = np.arange(6, dtype=float).reshape(3, 2)
    pairer = _pairer()
    out = [
        pairer.on_event(e, 1000 + i, now=0.0)
        for i, e in enumerate(call_events("r1", x, version="7", flags=[True, False, True]))
    ]
    assert out[:3] == [None, None, None]
    call = out[3]
    assert call is not None
    assert (call.request_id, call.endpoint, call.model_version, call.event_ms) == ("r1", "default", "7", 1003)
    np.testing.assert_array_equal(call.features, x)
    assert call.outlier_flags is not None and call.outlier_flags.tolist() == [True, False, True]
    assert pairer.skipped == {"other_node": 2}
    assert not pairer.pending


def test_response_first_pairs_too() -> None:
    pairer = _pairer()
    events = call_events("r1", np.ones((2, 2)))
    assert pairer.on_event(events[3], 1, now=0.0) is None
    call = pairer.on_event(events[2], 2, now=0.0)
    assert call is not None and call.features.shape == (2, 2)


def test_seldons_duplicate_events_are_dropped_and_counted() -> None:
    pairer = _pairer()
    events = call_events("r1", np.ones((2, 2)))
    model_req, model_resp = events[2], events[3]
    assert pairer.on_event(model_req, 1, now=0.0) is None
    assert pairer.on_event(model_req, 1, now=0.0) is None  # repeated before the pair completes
    assert pairer.on_event(model_resp, 2, now=0.0) is not None
    assert pairer.on_event(model_resp, 2, now=0.0) is None  # repeated after
    assert pairer.on_event(model_req, 2, now=0.0) is None
    assert pairer.skipped["duplicate"] == 3


def test_unpaired_requests_expire_and_are_counted() -> None:
    pairer = _pairer(pair_ttl_s=10.0)
    pairer.on_event(call_events("r1", np.ones((1, 2)))[2], 1, now=0.0)
    pairer.on_event(call_events("r2", np.ones((1, 2)))[2], 1, now=5.0)
    assert pairer.expire(now=10.0) == 1
    assert pairer.unpaired["expired"] == 1 and list(pairer.pending) == ["r2"]
    # its response arriving later is counted as late, not windowed
    assert pairer.on_event(call_events("r1", np.ones((1, 2)))[3], 2, now=11.0) is None
    assert pairer.skipped["late"] == 1


def test_pending_requests_are_bounded_and_evictions_counted() -> None:
    pairer = _pairer(max_pending=2)
    for i in range(3):
        pairer.on_event(call_events(f"r{i}", np.ones((1, 2)))[2], 1, now=float(i))
    assert list(pairer.pending) == ["r1", "r2"]
    assert pairer.unpaired["evicted"] == 1


def test_unusable_payloads_and_feedback_events_are_counted() -> None:
    pairer = _pairer()
    good = call_events("r1", np.ones((1, 2)))[2]
    bad = LogEvent(**{**{s: getattr(good, s) for s in good.__slots__}, "payload": b"not json"})
    with pytest.raises(UnusablePayload):
        pairer.on_event(bad, 1, now=0.0)
    no_features = LogEvent(
        **{**{s: getattr(good, s) for s in good.__slots__}, "request_id": "r2", "payload": b'{"inputs": []}'}
    )
    with pytest.raises(UnusablePayload, match="no 'features' input"):
        pairer.on_event(no_features, 1, now=0.0)
    feedback = LogEvent(**{**{s: getattr(good, s) for s in good.__slots__}, "type": TYPE_FEEDBACK})
    assert pairer.on_event(feedback, 1, now=0.0) is None
    # the response of the unusable request is counted with it, not as a duplicate
    assert pairer.on_event(call_events("r1", np.ones((1, 2)))[3], 2, now=0.0) is None
    assert pairer.skipped == {"unusable": 3, "not_inference": 1}


def test_snapshot_round_trip_keeps_pending_and_seen() -> None:
    pairer = _pairer()
    events = call_events("r1", np.ones((2, 2)))
    pairer.on_event(events[2], 1, now=0.0)
    pairer.on_event(call_events("r0", np.ones((1, 2)))[2], 1, now=0.0)
    pairer.on_event(call_events("r0", np.ones((1, 2)))[3], 1, now=0.0)
    restored = _pairer()
    restored.restore(pairer.snapshot())
    assert restored.on_event(call_events("r0", np.ones((1, 2)))[3], 1, now=0.0) is None  # duplicate
    call = restored.on_event(events[3], 2, now=0.0)
    assert call is not None and call.features.shape == (2, 2)


def test_a_chained_model_nodes_request_as_seldon_logs_it_carries_outputs() -> None:
    """Seldon's executor logs a node's request before ``Chain`` renames the previous node's ``outputs``
    to ``inputs`` (executor/predictor/predictor_process.go: ``logPayload`` in ``Predict``, ``Chain`` in
    ``transformInput``), and the local runtime does the same: the model node's logged request is the
    outlier node's response, with the features and flags under ``outputs``."""
    x = np.arange(6, dtype=float).reshape(3, 2)
    events = call_events("r1", x, version="7", flags=[True, False, True])
    logged = dataclasses.replace(events[2], payload=events[1].payload)  # the outlier node's response
    assert b'"inputs"' not in logged.payload
    pairer = _pairer()
    assert pairer.on_event(logged, 1, now=0.0) is None
    call = pairer.on_event(events[3], 2, now=0.0)
    assert call is not None, pairer.skipped
    np.testing.assert_array_equal(call.features, x)
    assert call.outlier_flags is not None and call.outlier_flags.tolist() == [True, False, True]
