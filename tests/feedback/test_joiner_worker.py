"""The joiner's stages on the in-memory log with a fake clock: outputs, restart from snapshots,
pause/resume under a pending limit, the sampling breaker, lag on /metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from driftloop_feedback.errors import TopologyError
from driftloop_feedback.join.pipeline import Joiner
from driftloop_feedback.join.settings import JoinerSettings
from driftloop_feedback.labelled import LabelledDeduper
from driftloop_feedback.labelled_batch import decode_labelled, encode_examples
from driftloop_feedback.records import LabelledExample, TruthRecord
from prometheus_client import generate_latest

from driftloop.eventlog import EventLogError, MemoryEventLog, TopicPartition
from tests.feedback.helpers import chain_events


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def settings(tmp_path: Path, **kw: object) -> JoinerSettings:
    values: dict[str, object] = {"partitions": 2, "state_dir": tmp_path / "state", "checkpoint_interval_s": 5}
    values.update(kw)
    return JoinerSettings.model_validate(values)


def log_calls(log: MemoryEventLog, s: JoinerSettings, start: int, n: int, truth: bool = True) -> set[str]:
    producer = log.producer()
    expected = set()
    for i in range(start, start + n):
        rid = f"req-{i}"
        for ev in chain_events(rid, [[float(i)]], [float(i)]):
            producer.send(s.request_log_topic, ev.payload, headers=ev.headers())
        if truth:
            producer.send(s.feedback_topic, TruthRecord(rid, 0, i + 0.5, 0.0).encode(), key=rid.encode())
            expected.add(f"{rid}:0")
    return expected


def labelled(log: MemoryEventLog, s: JoinerSettings) -> list[LabelledExample]:
    consumer = log.consumer("check", [s.labelled_topic])
    out = [e for r in consumer.poll(0, 100_000) for e in decode_labelled(r.value)]
    consumer.close()
    return out


def run(joiner: Joiner, steps: int = 20) -> None:
    for _ in range(steps):
        joiner.step(0.0)


def test_joins_through_all_stages_and_exposes_lag(tmp_path: Path) -> None:
    log, clock = MemoryEventLog(), FakeClock()
    s = settings(tmp_path)
    joiner = Joiner(log, s, clock=clock)
    expected = log_calls(log, s, 0, 50)
    run(joiner)
    joiner.checkpoint()
    examples = labelled(log, s)
    assert {e.example_id for e in examples} == expected and len(examples) == 50
    assert joiner.counters().joined == 50
    text = generate_latest(joiner.registry()).decode()
    assert (
        'driftloop_joiner_consumer_lag{partition="0",stage="request",topic="driftloop.requestlog"} 0.0'
        in text
    )
    assert 'driftloop_joiner_events_total{outcome="joined",stage="request"} 50.0' in text
    joiner.close()


def test_restart_without_checkpoint_replays_from_snapshot_same_examples(tmp_path: Path) -> None:
    log, clock = MemoryEventLog(), FakeClock()
    s = settings(tmp_path)
    first = Joiner(log, s, clock=clock)
    expected = log_calls(log, s, 0, 20)
    run(first)
    first.checkpoint()
    expected |= log_calls(log, s, 20, 20)
    run(first)  # processed and emitted, but no checkpoint: the "crash" loses this state
    first.close()
    second = Joiner(log, s, clock=clock)
    run(second)
    second.checkpoint()
    examples = labelled(log, s)
    by_id: dict[str, LabelledExample] = {}
    for e in examples:
        assert by_id.setdefault(e.example_id, e) == e  # replayed examples are identical
    assert set(by_id) == expected
    assert len(examples) == 60  # the 20 after the snapshot were emitted twice: at-least-once on the topic
    dedupe = LabelledDeduper()
    trainer_view = list(dedupe.feed(encode_examples(examples, max_rows=7)))
    assert sorted(e.example_id for e in trainer_view) == sorted(expected) and dedupe.duplicates == 20
    second.close()


def test_pending_limit_pauses_predictions_and_truth_drains_them(tmp_path: Path) -> None:
    log, clock = MemoryEventLog(), FakeClock()
    s = settings(tmp_path, partitions=1, max_pending=5, poll_max_records=4)
    joiner = Joiner(log, s, clock=clock)
    log_calls(log, s, 0, 30, truth=False)
    run(joiner, 40)
    assert joiner.request.stats.paused is False  # stats refresh at checkpoints
    joiner.checkpoint()
    assert joiner.request.stats.paused and 5 <= joiner.request.stats.pending < 10
    producer = log.producer()
    for i in range(30):
        producer.send(
            s.feedback_topic, TruthRecord(f"req-{i}", 0, 1.0, 0.0).encode(), key=f"req-{i}".encode()
        )
    run(joiner, 80)
    joiner.checkpoint()
    assert joiner.counters().joined == 30 and not joiner.request.stats.paused
    joiner.close()


def test_breaker_is_off_by_default_and_when_on_counts_every_sampled_out_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log, clock = MemoryEventLog(), FakeClock()
    s = settings(
        tmp_path,
        partitions=1,
        breaker_enabled=True,
        breaker_lag=10,
        breaker_keep_fraction=0.25,
        poll_max_records=8,
    )
    assert JoinerSettings().breaker_enabled is False
    joiner = Joiner(log, s, clock=clock)
    log_calls(log, s, 0, 200)
    while joiner.rekey.step(0.0):  # a burst: the re-keyed request log fills faster than the join reads
        pass
    joiner.request.step(0.0)
    with caplog.at_level(logging.WARNING):
        joiner.request.checkpoint()  # observes the lag of the prediction input: trips
    assert joiner.request.breaker.tripped and "TRIPPED" in caplog.text
    run(joiner, 400)
    joiner.checkpoint()
    c = joiner.counters()
    assert joiner.sampled_out() > 0
    # every call was either joined or sampled out; each sampled-out call is 4 counted log records
    assert joiner.sampled_out() % 4 == 0 and c.joined + joiner.sampled_out() // 4 == 200
    assert 0.1 < c.joined / 200 < 0.4  # keep fraction 0.25
    joiner.close()


def test_topics_with_different_partition_counts_are_refused(tmp_path: Path) -> None:
    log = MemoryEventLog()
    log.create_topic("driftloop.feedback", 3)
    with pytest.raises(TopologyError, match="co-partitioned"):
        Joiner(log, settings(tmp_path, partitions=2))


def test_restart_reads_inputs_the_snapshot_did_not_cover(tmp_path: Path) -> None:
    log, clock = MemoryEventLog(), FakeClock()
    s = settings(tmp_path)
    first = Joiner(log, s, clock=clock)
    log_calls(log, s, 0, 10, truth=False)
    run(first)
    first.checkpoint()  # snapshots hold request-log offsets only: no truth was read yet
    first.close()
    producer = log.producer()
    for i in range(10):
        producer.send(
            s.feedback_topic, TruthRecord(f"req-{i}", 0, 1.0, 0.0).encode(), key=f"req-{i}".encode()
        )
    second = Joiner(log, s, clock=clock)
    run(second)
    second.checkpoint()
    assert {e.example_id for e in labelled(log, s)} == {f"req-{i}:0" for i in range(10)}
    second.close()


def test_malformed_truth_records_are_counted_and_skipped(tmp_path: Path) -> None:
    log, clock = MemoryEventLog(), FakeClock()
    s = settings(tmp_path, partitions=1)
    joiner = Joiner(log, s, clock=clock)
    expected = log_calls(log, s, 0, 3)
    producer = log.producer()
    for bad in (b'{"kind":"truth","request_id":', b'{"kind":"truth","request_id":"req-1"}', b"[1, 2]"):
        producer.send(s.feedback_topic, bad, key=b"req-1")
    run(joiner)
    joiner.checkpoint()
    assert {e.example_id for e in labelled(log, s)} == expected
    assert joiner.request.stats.counters.malformed == 3  # the asset stage skips truth unread
    joiner.close()


def test_checkpoint_flushes_outputs_before_writing_snapshots_and_commits_last(tmp_path: Path) -> None:
    log, clock = MemoryEventLog(), FakeClock()
    s = settings(tmp_path, partitions=1, mode="request")
    joiner = Joiner(log, s, clock=clock)
    log_calls(log, s, 0, 5)
    run(joiner)
    stage = joiner.request
    order: list[str] = []
    flush, write, commit = stage.producer.flush, stage.snapshots.write, stage.consumer.commit

    def failing_flush(timeout_s: float | None = None) -> None:
        order.append("flush")
        raise EventLogError("broker gone")

    stage.producer.flush = failing_flush  # type: ignore[method-assign]
    stage.snapshots.write = lambda *a: (order.append("write"), write(*a))[1]  # type: ignore[method-assign]
    stage.consumer.commit = lambda *a: (order.append("commit"), commit(*a))[1]  # type: ignore[method-assign]
    with pytest.raises(EventLogError):
        stage.checkpoint()
    assert order == ["flush"] and stage.snapshots.load("request", 0) is None  # nothing written
    stage.producer.flush = lambda *a: (order.append("flush"), flush(*a))[1]  # type: ignore[method-assign]
    order.clear()
    stage.checkpoint()  # the shard is still to be saved: the failed checkpoint wrote nothing
    assert order == ["flush", "write", "commit"] and stage.snapshots.load("request", 0) is not None
    joiner.close()


def test_settle_heap_freezes_the_start_up_heap_and_collects_young_objects_less_often() -> None:
    import gc

    from driftloop_feedback.join.pipeline import YOUNG_GC_THRESHOLD, settle_heap

    before = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_threshold() == (YOUNG_GC_THRESHOLD, *before[1:]) and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class HeldBarrier:
    """A flush barrier the test releases (or fails) by hand."""

    def __init__(self) -> None:
        self.released = False
        self.error: EventLogError | None = None

    def done(self) -> bool:
        if self.error is not None:
            raise self.error
        return self.released

    def wait(self, timeout_s: float | None = None) -> None:
        if self.error is not None:
            raise self.error
        assert self.released, "the test would block here: release the barrier first"


def test_a_due_checkpoint_waits_for_its_outputs_without_stopping_the_stage(tmp_path: Path) -> None:
    """The interval's checkpoint puts a barrier behind the outputs so far; the stage goes on joining;
    the snapshot and the commit come in the first step after the barrier is done, and hold the state
    and offsets of when the checkpoint began."""
    log, clock = MemoryEventLog(), FakeClock()
    s = settings(tmp_path, partitions=1, mode="request")
    joiner = Joiner(log, s, clock=clock)
    stage = joiner.request
    barriers: list[HeldBarrier] = []

    def flush_async() -> HeldBarrier:
        barriers.append(HeldBarrier())
        return barriers[-1]

    stage.producer.flush_async = flush_async  # type: ignore[attr-defined]
    log_calls(log, s, 0, 5)
    run(joiner)
    clock.t += 10  # the checkpoint interval has passed
    run(joiner, 1)
    assert len(barriers) == 1 and stage.snapshots.load("request", 0) is None
    log_calls(log, s, 5, 5)  # more work while the outputs are being flushed
    run(joiner)
    assert sum(shard.counters.joined for shard in stage.shards.values()) == 10
    assert stage.snapshots.load("request", 0) is None and stage.consumer.committed(_tp(s, 0)) is None
    barriers[0].released = True
    run(joiner, 1)
    saved = stage.snapshots.load("request", 0)
    assert saved is not None and saved["shard"]["counters"].joined == 5  # as of the checkpoint's begin
    assert stage.consumer.committed(_tp(s, 0)) == saved["offsets"][_tp(s, 0)]
    joiner.close()


def checkpoint_begun(tmp_path: Path, partitions: int, calls: int) -> tuple[Joiner, HeldBarrier]:
    """A request stage that joined ``calls`` calls and began a checkpoint whose barrier is held."""
    log, clock = MemoryEventLog(), FakeClock()
    s = settings(tmp_path, partitions=partitions, mode="request")
    joiner = Joiner(log, s, clock=clock)
    barrier = HeldBarrier()
    joiner.request.producer.flush_async = lambda: barrier  # type: ignore[attr-defined]
    log_calls(log, s, 0, calls)
    run(joiner)
    clock.t += 10  # past the checkpoint interval
    run(joiner, 1)
    return joiner, barrier


def test_a_checkpoint_whose_outputs_fail_writes_nothing_and_leaves_the_shards_to_save(tmp_path: Path) -> None:
    joiner, barrier = checkpoint_begun(tmp_path, partitions=1, calls=5)
    stage = joiner.request
    barrier.error = EventLogError("3 of 5 records were not acknowledged")
    with pytest.raises(EventLogError, match="not acknowledged"):
        run(joiner, 1)
    assert stage.snapshots.load("request", 0) is None and stage.dirty == {0}
    del stage.producer.flush_async  # type: ignore[attr-defined]
    stage.checkpoint()
    assert stage.snapshots.load("request", 0) is not None
    joiner.close()


def test_a_shard_revoked_while_its_checkpoint_waits_is_not_written(tmp_path: Path) -> None:
    """Its new owner may have loaded the last written snapshot already: a snapshot begun before the
    partition moved must not replace it."""
    joiner, barrier = checkpoint_begun(tmp_path, partitions=2, calls=20)
    stage = joiner.request
    owned = stage.consumer.assignment()
    stage.consumer.assignment = lambda: {tp for tp in owned if tp.partition == 1}  # type: ignore[method-assign]
    barrier.released = True
    stage._finish_checkpoint(wait=True)
    assert stage.snapshots.load("request", 0) is None and stage.snapshots.load("request", 1) is not None
    joiner.close()


def _tp(s: JoinerSettings, partition: int) -> TopicPartition:
    return TopicPartition(s.keyed_log_topic, partition)


def test_checkpoints_of_a_costly_state_are_spaced_to_keep_copying_within_its_share(tmp_path: Path) -> None:
    """A checkpoint whose state copy took 50 ms, with a 1% share, makes the next wait 5 s, past the 1 s
    interval (the copy is measured; the spacing is in the stage's clock)."""
    import time

    log, clock = MemoryEventLog(), FakeClock()
    s = settings(tmp_path, partitions=1, mode="request", checkpoint_interval_s=1, checkpoint_max_share=0.01)
    joiner = Joiner(log, s, clock=clock)
    stage = joiner.request
    encode = stage.snapshots.encode

    def slow_encode(payload: dict[str, object]) -> bytes:
        time.sleep(0.05)
        return encode(payload)

    stage.snapshots.encode = slow_encode  # type: ignore[method-assign]
    log_calls(log, s, 0, 5)
    run(joiner)
    clock.t += 1.5
    run(joiner, 1)
    first = clock.t
    assert stage.stats.checkpoints == 1 and stage._checkpoint_pause >= 5.0  # 50 ms over 1%
    for i in range(3):
        log_calls(log, s, 10 + i, 1)
        clock.t += 1.5  # 1.5, 3.0, 4.5 s after the first: each past the interval, none past the pause
        run(joiner, 1)
        assert stage.stats.checkpoints == 1
    clock.t = first + stage._checkpoint_pause + 0.1
    run(joiner, 1)
    assert stage.stats.checkpoints == 2
    joiner.close()
