"""The trainer worker on the in-memory log with an in-memory registry (fast unit tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
from driftloop_feedback.labelled_batch import encode_examples
from driftloop_feedback.learn.settings import CandidatePolicySettings, TrainerSettings
from driftloop_feedback.learn.state import digest_of
from driftloop_feedback.learn.worker import TrainerWorker
from driftloop_feedback.records import LabelledExample

from driftloop.eventlog import MemoryEventLog
from tests.learn.helpers import (
    FakeClock,
    FakeRegistry,
    classification_rows,
    classifier_champion,
    examples,
    regression_rows,
    regressor_champion,
)

TOPIC = "driftloop.labelled"


def make_settings(tmp_path: Path, **policy: object) -> TrainerSettings:
    values: dict[str, object] = {
        "min_examples": 50,
        "min_interval_s": 0,
        "every_n_examples": 200,
        "every_s": None,
    }
    values.update(policy)
    return TrainerSettings(
        state_dir=tmp_path / "trainer",
        batch_size=32,
        replay_ratio=0.5,
        replay_capacity=100,
        checkpoint_interval_s=1.0,
        poll_timeout_s=0.0,
        champion_retry_s=5.0,
        topic_retry_s=5.0,
        registry_retry_s=30.0,
        policy=CandidatePolicySettings.model_validate(values),
    )


def produce(log: MemoryEventLog, values: list[bytes], partitions: int = 2) -> None:
    log.create_topic(TOPIC, partitions)
    producer = log.producer()
    for value in values:
        key = value.split(b'"request_id":"')[-1].split(b'"')[0]
        producer.send(TOPIC, value, key=key)
    producer.flush()


def produce_as(log: MemoryEventLog, labelled: list[LabelledExample], fmt: str, partitions: int = 2) -> None:
    """``labelled`` as JSON records (one per example, keyed by request id) or as batch records (what the
    joiner writes: 7 examples each, partitions in turn)."""
    if fmt == "json":
        produce(log, [e.encode() for e in labelled], partitions)
        return
    log.create_topic(TOPIC, partitions)
    producer = log.producer()
    for i, value in enumerate(encode_examples(labelled, max_rows=7)):
        producer.send(TOPIC, value, partition=i % partitions)
    producer.flush()


def run_until(worker: TrainerWorker, done: Callable[[], bool], steps: int = 200) -> None:
    for _ in range(steps):
        worker.step()
        if done():
            return
    raise AssertionError(f"not done after {steps} steps: {worker.status}")


@pytest.mark.parametrize("fmt", ["json", "batch"])
def test_each_example_is_learned_once_duplicates_and_bad_records_counted(tmp_path: Path, fmt: str) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    champion = regressor_champion()
    seen_before = champion.n_samples_seen_
    registry.add(champion, metrics={"val_mae": 0.2}, alias="champion")
    X, y = regression_rows(300, seed=1)
    labelled = examples(X, y)
    short = examples(X[:1, :2], y[:1], prefix="short")  # 2 features, not 3
    produce_as(log, labelled + labelled[:40] + short, fmt)  # 40 resends, as after a joiner crash
    produce(log, [b"not json" if fmt == "json" else encode_examples(labelled[:3])[0][:-9]])
    worker = TrainerWorker(log, registry, make_settings(tmp_path, every_n_examples=10_000), clock=clock)
    run_until(worker, lambda: worker.state is not None and worker.state.consumed == 342)
    worker.checkpoint()
    state = worker.state
    assert state is not None
    assert state.challenger.learned == 300 and state.duplicates == 40
    assert state.rejected == {"undecodable": 1, "features": 1}
    assert state.learned_digest == digest_of(e.example_id for e in examples(X, y))
    model = state.challenger.model
    assert model.n_samples_seen_ == seen_before + 300 + state.challenger.replayed
    assert champion.n_samples_seen_ == seen_before  # the champion itself is never trained
    text = _metrics_text(worker)
    assert "driftloop_trainer_examples_duplicate_total 40.0" in text
    assert 'driftloop_trainer_examples_rejected_total{reason="undecodable"} 1.0' in text


def test_a_schedule_candidate_is_registered_with_alias_challenger(tmp_path: Path) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor_champion(), metrics={"val_mae": 0.2}, alias="champion")
    X, y = regression_rows(250, seed=2)
    produce(log, [e.encode() for e in examples(X, y)])
    worker = TrainerWorker(log, registry, make_settings(tmp_path), clock=clock)
    run_until(worker, lambda: "challenger" in registry.aliases)
    version = registry.versions[registry.aliases["challenger"]]
    assert registry.aliases["champion"] == 1  # never promoted
    assert version.version_tags["driftloop.parent_version"] == "1"
    assert version.version_tags["driftloop.trigger"] == "schedule"
    assert version.params["window.count"] == 224  # 200 reached inside the 7th batch of 32
    assert "prequential_error_candidate" in version.metrics


def test_no_champion_yet_waits_and_says_so_then_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    worker = TrainerWorker(log, registry, make_settings(tmp_path), clock=clock)
    assert worker.step() == 0
    assert "no champion registered yet" in worker.status and "no champion registered yet" in caplog.text
    calls = registry.calls
    worker.step()
    assert registry.calls == calls  # not asked again before the retry interval
    registry.add(regressor_champion(), alias="champion")
    clock.advance(5.0)
    worker.step()
    assert worker.state is not None and worker.state.champion.version == 1


def test_no_labelled_topic_yet_waits_and_says_so(tmp_path: Path) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor_champion(), alias="champion")
    worker = TrainerWorker(log, registry, make_settings(tmp_path), clock=clock)
    worker.step()
    assert "no labelled topic 'driftloop.labelled' yet" in worker.status
    X, y = regression_rows(10, seed=3)
    produce(log, [e.encode() for e in examples(X, y)])
    clock.advance(5.0)
    run_until(worker, lambda: worker.state is not None and worker.state.challenger.learned == 10)


def test_an_unreachable_registry_keeps_the_candidate_and_retries_later(tmp_path: Path) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor_champion(), alias="champion")
    X, y = regression_rows(250, seed=4)
    produce(log, [e.encode() for e in examples(X, y)])
    worker = TrainerWorker(log, registry, make_settings(tmp_path), clock=clock)
    registry.registration_down = True
    run_until(worker, lambda: worker.state is not None and worker.state.challenger.learned == 250)
    assert worker.state is not None and len(worker.state.pending) == 1
    assert worker.state.pending[0].attempts == 1 and "refused" in str(worker.state.pending[0].last_error)
    registry.registration_down = False
    worker.step()
    assert worker.state.pending  # not before the retry interval
    clock.advance(30.0)
    worker.step()
    assert not worker.state.pending and registry.aliases == {"champion": 1, "challenger": 2}


def test_a_candidate_registered_before_a_crash_is_not_registered_twice(tmp_path: Path) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor_champion(), alias="champion")
    X, y = regression_rows(250, seed=5)
    produce(log, [e.encode() for e in examples(X, y)])
    worker = TrainerWorker(log, registry, make_settings(tmp_path), clock=clock)
    run_until(worker, lambda: "challenger" in registry.aliases)
    # the crash: registered, but the checkpoint written at the cut still lists the candidate as pending
    worker.close()  # the process is gone (its group membership with it); the restart reads the same log
    restarted = TrainerWorker(log, registry, make_settings(tmp_path), clock=clock)
    restarted.step()
    assert restarted.state is not None and not restarted.state.pending
    assert len(registry.versions) == 2


def test_a_drift_event_about_the_champion_cuts_a_drift_candidate(tmp_path: Path) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor_champion(), alias="champion")
    log.create_topic("driftloop.drift", 1)
    producer = log.producer()
    producer.send(
        "driftloop.drift", orjson.dumps({"predictor": "main", "model_version": "1", "is_drift": True})
    )
    producer.flush()
    X, y = regression_rows(120, seed=6, shift=5.0)
    produce(log, [e.encode() for e in examples(X, y)])
    settings = make_settings(tmp_path, every_n_examples=None, drift_min_examples=64)
    worker = TrainerWorker(log, registry, settings, clock=clock)
    run_until(worker, lambda: "challenger" in registry.aliases)
    assert registry.versions[2].version_tags["driftloop.trigger"] == "drift"


def test_a_degraded_champion_cuts_a_degradation_candidate(tmp_path: Path) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor_champion(), metrics={"val_mae": 0.2}, alias="champion")
    X, y = regression_rows(300, seed=7, shift=3.0)  # the plant changed: the champion is off by ~3
    produce(log, [e.encode() for e in examples(X, y)])
    settings = make_settings(tmp_path, every_n_examples=None, degradation_min_examples=100)
    worker = TrainerWorker(log, registry, settings, clock=clock)
    run_until(worker, lambda: "challenger" in registry.aliases)
    version = registry.versions[2]
    assert version.version_tags["driftloop.trigger"] == "degradation"
    assert version.metrics["prequential_error_champion"] > 2.0


def test_a_classifier_learns_with_its_declared_classes_and_refuses_unknown_labels(tmp_path: Path) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    champion = classifier_champion()
    registry.add(champion, metrics={"val_accuracy": 0.9}, alias="champion")
    X, y = classification_rows(250, seed=8)
    y_bad = y.copy()
    y_bad[:3] = 7  # a class the champion never declared
    produce(log, [e.encode() for e in examples(X, y_bad)])
    worker = TrainerWorker(log, registry, make_settings(tmp_path), clock=clock)
    run_until(worker, lambda: "challenger" in registry.aliases)
    state = worker.state
    assert state is not None and state.rejected == {"target": 3}
    assert state.policy.degradation.baseline == pytest.approx(0.1)
    candidate = registry.load_sklearn_model(f"models:/x/{registry.aliases['challenger']}")
    np.testing.assert_array_equal(candidate.classes_, champion.classes_)


def _metrics_text(worker: TrainerWorker) -> str:
    from prometheus_client import generate_latest

    return generate_latest(worker.metrics.registry).decode()


@pytest.mark.parametrize("fmt", ["json", "batch"])
def test_a_crash_between_checkpoints_redoes_exactly_the_unsaved_work(tmp_path: Path, fmt: str) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    champion = regressor_champion()
    registry.add(champion, alias="champion")
    X, y = regression_rows(400, seed=9)
    labelled = examples(X, y)
    produce_as(log, labelled[:200], fmt)
    settings = make_settings(tmp_path, every_n_examples=10_000)
    worker = TrainerWorker(log, registry, settings, clock=clock)
    run_until(worker, lambda: worker.state is not None and worker.state.consumed == 200)
    worker.checkpoint()  # 200 learned and committed ...
    produce_as(log, labelled[200:300], fmt)
    run_until(worker, lambda: worker.state is not None and worker.state.consumed == 300)
    assert worker._batch  # ... 100 more read, part of them still batched, none checkpointed: crash
    worker.close()  # the group moves on (as after the session timeout of a killed member)
    produce_as(log, labelled[300:], fmt)
    restarted = TrainerWorker(log, registry, settings, clock=clock)
    run_until(restarted, lambda: restarted.state is not None and restarted.state.challenger.learned == 400)
    for _ in range(3):
        restarted.step()  # nothing more arrives
    state = restarted.state
    assert state is not None and state.challenger.learned == 400
    assert state.learned_digest == digest_of(e.example_id for e in labelled)
    seen = state.challenger.model.n_samples_seen_
    assert seen == champion.n_samples_seen_ + 400 + state.challenger.replayed


def test_a_string_label_is_accepted_only_if_it_is_a_declared_class_exactly() -> None:
    from driftloop_feedback.learn.challenger import Challenger
    from driftloop_feedback.learn.replay import ReplayBuffer

    from tests.learn.helpers import incremental_classifier_champion

    challenger = Challenger(incremental_classifier_champion(("ok", "warm", "hot")), ReplayBuffer(10, 0.0))
    assert challenger.accepts("hot") and challenger.accepts("ok")
    assert not challenger.accepts("warmer")  # a cast to the classes' "<U4" dtype makes it "warm"
    assert not challenger.accepts("h") and not challenger.accepts(1.0)


def test_label_latency_is_measured_from_the_truths_arrival_for_request_joins(tmp_path: Path) -> None:
    """Issue 14's benchmark figure: the feedback API's receipt of a truth (``truth_time`` of a request
    join) to the challenger learning it, on the worker's clock; asset joins (truth_time = a reading's
    event time, not an arrival) are not counted."""
    log, registry = MemoryEventLog(), FakeRegistry()
    registry.add(regressor_champion(), metrics={"val_mae": 0.2}, alias="champion")
    X, y = regression_rows(20, seed=3)
    made = examples(X, y)
    sent = [
        e.__class__(**{**e.__dict__, "truth_time": 5_000.0 - (2.0 if i < 10 else 40.0)})
        for i, e in enumerate(made)
    ]
    by_asset = examples(X[:5], y[:5], prefix="asset")
    by_asset = [e.__class__(**{**e.__dict__, "joined_by": "asset", "truth_time": 1.0}) for e in by_asset]
    produce(log, [e.encode() for e in sent + by_asset])
    clock = FakeClock(5_000.0)
    worker = TrainerWorker(log, registry, make_settings(tmp_path, every_n_examples=10_000), clock=clock)
    run_until(worker, lambda: worker.state is not None and worker.state.consumed == 25)
    worker.checkpoint()
    text = _metrics_text(worker)
    assert "driftloop_trainer_label_latency_seconds_count 20.0" in text
    assert 'driftloop_trainer_label_latency_seconds_bucket{le="2.5"} 10.0' in text
    assert 'driftloop_trainer_label_latency_seconds_bucket{le="30.0"} 10.0' in text
    assert 'driftloop_trainer_label_latency_seconds_bucket{le="60.0"} 20.0' in text


def test_a_poll_asks_for_about_poll_max_examples_when_records_hold_many(tmp_path: Path) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor_champion(), alias="champion")
    X, y = regression_rows(147, seed=12)
    labelled = examples(X, y)
    produce_as(log, labelled[:7], "batch", partitions=1)  # one record of 7 examples
    settings = make_settings(tmp_path, every_n_examples=10_000).model_copy(
        update={"poll_max_records": 100, "poll_max_examples": 21}
    )
    worker = TrainerWorker(log, registry, settings, clock=clock)
    run_until(worker, lambda: worker.state is not None and worker.state.consumed == 7)
    producer = log.producer()
    for value in encode_examples(labelled[7:], max_rows=7):  # 20 more records of 7
        producer.send(TOPIC, value, partition=0)
    producer.flush()
    worker.step()
    assert worker.state is not None and worker.state.consumed == 7 + 21  # 3 records: ~21 examples
    run_until(worker, lambda: worker.state is not None and worker.state.consumed == 147)


def test_each_batch_is_offered_to_the_replay_buffer_right_after_it_is_learned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay's order (docs/trainer.md, ``replay.py``): a batch is offered right after it is learned,
    so the later batches of a poll replay rows of its earlier batches too (offering a whole poll after its
    batches, tried on 2026-12-05, replayed nothing within a backlog poll from an empty buffer)."""
    from driftloop_feedback.learn.replay import ReplayBuffer

    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor_champion(), alias="champion")
    X, y = regression_rows(320, seed=4)
    y[64:] += 1000.0  # the second poll's rows, told apart by their targets
    labelled = examples(X, y)
    produce_as(log, labelled[:64], "batch")
    worker = TrainerWorker(log, registry, make_settings(tmp_path, every_n_examples=10_000), clock=clock)
    run_until(worker, lambda: worker.state is not None and worker.state.challenger.learned == 64)
    state = worker.state
    assert state is not None and state.challenger.replay.offered == 64
    drawn: list[np.ndarray] = []
    draw = ReplayBuffer.draw

    def recorded(self: ReplayBuffer, new_rows: int) -> tuple[np.ndarray, np.ndarray] | None:
        out = draw(self, new_rows)
        if out is not None:
            drawn.append(out[1])
        return out

    monkeypatch.setattr(ReplayBuffer, "draw", recorded)
    replayed_before = state.challenger.replayed
    produce_as(log, labelled[64:], "batch")
    worker.step()  # one poll of 256 rows: 8 batches of 32, each replaying 16 rows
    assert state.challenger.learned == 320 and len(drawn) == 8
    assert float(drawn[0].max()) < 500  # the first batch: only the first poll's rows were offered
    assert any(float(d.max()) > 500 for d in drawn[1:])  # later ones: this poll's earlier batches too
    assert state.challenger.replay.offered == 320
    assert state.challenger.replayed - replayed_before == 8 * 16


def test_a_checkpoint_holds_a_replay_buffer_offered_every_learned_row(tmp_path: Path) -> None:
    """A cut in the middle of a poll checkpoints: the buffer in it was offered every row learned."""
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor_champion(), alias="champion")
    X, y = regression_rows(300, seed=5)
    produce_as(log, examples(X, y), "batch")
    worker = TrainerWorker(
        log, registry, make_settings(tmp_path, min_examples=10, every_n_examples=96), clock=clock
    )
    worker.step()  # one poll of 300 rows: a schedule cut after 96, checkpointed in the middle of the
    saved = worker.store.load()  # poll (the checkpoint first learns the 204 rows still batched)
    assert saved is not None and saved["state"].candidates_cut == 1
    challenger = saved["state"].challenger
    assert challenger.learned == 300 and challenger.replay.offered == 300
