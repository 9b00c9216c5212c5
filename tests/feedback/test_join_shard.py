"""The join state machine, driven by handing it items and times (no clock is read, nothing sleeps)."""

from __future__ import annotations

from driftloop_feedback.join.rules import JoinRules
from driftloop_feedback.join.shard import JoinShard
from driftloop_feedback.labelled_batch import decode_labelled, is_batch
from driftloop_feedback.records import LabelledExample, Reading, TruthRecord

from tests.feedback.helpers import chain_events


def feed(shard: JoinShard, events: list, at: float) -> None:
    for e in events:
        shard.on_log_event(e, logged_at=at)


def test_request_join_uses_first_request_features_and_model_prediction() -> None:
    shard = JoinShard(JoinRules(mode="request"))
    feed(shard, chain_events("r1", [[1.0, 2.0], [3.0, 4.0]], [10.0, 20.0]), at=100.0)
    assert len(shard.store) == 2
    shard.on_truth(TruthRecord("r1", 1, 21.0, 150.0), logged_at=150.0)
    (example,) = shard.drain_labelled()
    assert (example.example_id, example.features, example.prediction, example.truth) == (
        "r1:1",
        (3.0, 4.0),
        20.0,
        21.0,
    )
    assert example.model_version == "3" and example.joined_by == "request"
    assert shard.counters.joined == 1 and len(shard.store) == 1


def test_truth_before_prediction_out_of_order_still_joins() -> None:
    shard = JoinShard(JoinRules(mode="request"))
    shard.on_truth(TruthRecord("r2", 0, 5.0, 90.0), logged_at=90.0)
    events = chain_events("r2", [[1.0]], [4.0])
    feed(shard, list(reversed(events)), at=95.0)  # response before request
    assert [e.truth for e in shard.drain_labelled()] == [5.0]
    assert shard.counters.orphan_truth == 0


def test_repeated_node_events_and_resent_truth_are_duplicates() -> None:
    shard = JoinShard(JoinRules(mode="request"))
    events = chain_events("r3", [[1.0]], [4.0])
    feed(shard, events + events, at=10.0)
    shard.on_truth(TruthRecord("r3", 0, 5.0, 11.0), logged_at=11.0)
    shard.on_truth(TruthRecord("r3", 0, 5.0, 12.0), logged_at=12.0)
    assert len(shard.drain_labelled()) == 1
    assert shard.counters.duplicate == 5  # four repeated events + one resent truth


def test_ttl_expires_prediction_then_late_truth_is_counted_late() -> None:
    shard = JoinShard(JoinRules(mode="request", ttl_s=60.0))
    feed(shard, chain_events("r4", [[1.0]], [4.0]), at=0.0)
    shard.on_timer(59.0)
    assert shard.counters.expired == 0
    shard.on_timer(61.0)
    assert shard.counters.expired == 1 and len(shard.store) == 0
    shard.on_truth(TruthRecord("r4", 0, 5.0, 62.0), logged_at=62.0)
    assert shard.counters.late == 1 and shard.drain_labelled() == []


def test_orphan_truth_is_counted_when_its_ttl_passes() -> None:
    shard = JoinShard(JoinRules(mode="request", ttl_s=60.0))
    shard.on_truth(TruthRecord("nobody", 0, 5.0, 0.0), logged_at=0.0)
    shard.on_timer(30.0)
    assert shard.counters.orphan_truth == 0
    shard.on_timer(61.0)
    assert shard.counters.orphan_truth == 1 and shard.truths == {}


def asset_shard(**kw: float) -> JoinShard:
    return JoinShard(JoinRules(mode="auto", allowed_lateness_s=300.0, tolerance_s=150.0, **kw))


def reading(asset: str, t: float, temp: float) -> Reading:
    return Reading(asset, t, {"bearing_temp": temp, "load": 0.5})


def test_asset_join_labels_with_nearest_reading_at_t_plus_h_after_watermark() -> None:
    shard = asset_shard()
    feed(
        shard,
        chain_events("r5", [[1.0]], [60.0], assets=["pump-01"], times=[1000.0], horizon_s=1800),
        at=1000.0,
    )
    rows = shard.drain_forwarded()  # the request stage forwards asset-join rows...
    assert [r.example_id for r in rows] == ["r5:0"]
    target_shard = asset_shard()  # ...to the asset stage, keyed by asset
    target_shard.on_prediction(rows[0], logged_at=1001.0)
    for t, temp in [(2700.0, 61.0), (2860.0, 62.0), (3100.0, 63.0)]:  # target = 2800
        target_shard.on_reading(reading("pump-01", t, temp), logged_at=t)
    assert target_shard.drain_labelled() == []  # watermark 3100-300 = 2800 < 2800 + 150
    target_shard.on_reading(reading("pump-01", 3300.0, 64.0), logged_at=3300.0)
    (example,) = target_shard.drain_labelled()
    assert (example.truth, example.truth_time, example.joined_by) == (62.0, 2860.0, "asset")


def test_asset_join_late_reading_within_lateness_counts_beyond_is_late() -> None:
    shard = asset_shard()
    feed(shard, chain_events("r6", [[1.0]], [60.0], assets=["p"], times=[0.0], horizon_s=1000), at=0.0)
    shard.on_prediction(shard.drain_forwarded()[0], logged_at=0.0)
    shard.on_reading(reading("p", 1200.0, 1.0), logged_at=1.0)
    shard.on_reading(reading("p", 1010.0, 7.0), logged_at=2.0)  # out of order, within lateness
    shard.on_reading(reading("p", 800.0, 9.0), logged_at=3.0)  # behind the watermark (900): late
    assert shard.counters.late == 1
    shard.on_reading(reading("p", 1500.0, 1.0), logged_at=4.0)
    assert [e.truth for e in shard.drain_labelled()] == [7.0]


def test_asset_join_without_reading_in_tolerance_is_unmatched_and_duplicate_reading_counted() -> None:
    shard = asset_shard()
    feed(shard, chain_events("r7", [[1.0]], [60.0], assets=["p"], times=[0.0], horizon_s=1000), at=0.0)
    shard.on_prediction(shard.drain_forwarded()[0], logged_at=0.0)
    shard.on_reading(reading("p", 500.0, 1.0), logged_at=1.0)
    shard.on_reading(reading("p", 500.0, 1.0), logged_at=1.0)
    shard.on_reading(reading("p", 2000.0, 1.0), logged_at=2.0)
    assert shard.drain_labelled() == []
    assert (shard.counters.unmatched, shard.counters.duplicate) == (1, 1)


def test_snapshot_restore_keeps_pending_and_dedupe_state() -> None:
    shard = JoinShard(JoinRules(mode="request"))
    feed(shard, chain_events("r8", [[1.0], [2.0]], [4.0, 5.0]), at=0.0)
    shard.on_truth(TruthRecord("r8", 0, 4.5, 1.0), logged_at=1.0)
    shard.drain_labelled()
    restored = JoinShard.restore(shard.snapshot(), JoinRules(mode="request"))
    restored.on_truth(TruthRecord("r8", 0, 4.5, 2.0), logged_at=2.0)
    restored.on_truth(TruthRecord("r8", 1, 5.5, 2.0), logged_at=2.0)
    assert [e.example_id for e in restored.drain_labelled()] == ["r8:1"]
    assert restored.counters.duplicate == 1 and restored.counters.joined == 2


def _expected(
    example_id: str, truth: float, truth_time: float, features: tuple[float, ...], pred: float
) -> LabelledExample:
    rid, row = example_id.rsplit(":", 1)
    return LabelledExample(
        example_id, rid, int(row), features, pred, truth, "default", "3", 7.0, truth_time, "request"
    )


def test_labelled_records_are_one_batch_record_of_the_examples_in_either_order() -> None:
    shard = JoinShard(JoinRules(mode="request"))
    shard.on_truth(TruthRecord("r9", 0, 1.5, 3.0), logged_at=3.0)  # truth first: waits in `truths`
    feed(shard, chain_events("r9", [[1.0, 2.0], [3.0, 4.0]], [10.0, 20.0]), at=7.0)
    shard.on_truth(TruthRecord("r9", 1, 2.5, 8.0), logged_at=8.0)  # prediction first: waits in the store
    ((key, value),) = shard.drain_encoded()
    assert key is None and is_batch(value)
    assert decode_labelled(value) == [
        _expected("r9:0", 1.5, 3.0, (1.0, 2.0), 10.0),
        _expected("r9:1", 2.5, 8.0, (3.0, 4.0), 20.0),
    ]
    assert shard.drain_encoded() == []


def test_truths_restored_from_a_snapshot_without_their_hash_still_join_once() -> None:
    shard = JoinShard(JoinRules(mode="request"))
    shard.on_truth(TruthRecord("r10", 0, 1.5, 3.0), logged_at=3.0)
    state = shard.snapshot()
    state["truths"] = {k: v[:3] for k, v in state["truths"].items()}  # as snapshots before the hash
    restored = JoinShard.restore(state, JoinRules(mode="request"))
    feed(restored, chain_events("r10", [[1.0]], [10.0]), at=7.0)
    assert [e.example_id for e in restored.drain_labelled()] == ["r10:0"]
    restored.on_truth(TruthRecord("r10", 0, 1.5, 9.0), logged_at=9.0)
    assert restored.counters.joined == 1 and restored.counters.duplicate == 1
