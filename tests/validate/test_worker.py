"""The validator worker on the in-memory log with an in-memory registry and a fake clock."""

from __future__ import annotations

import itertools
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from driftloop_feedback.labelled_batch import encode_examples

from driftloop.eventlog import MemoryEventLog
from tests.validate.worker_helpers import (
    NAME,
    VERDICT,
    FakeClock,
    FakeRegistry,
    labelled,
    make_worker,
    metric,
    produce,
    regressor,
    run_until,
)


def test_a_better_challenger_gets_pass_written_with_its_evidence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "driftloop_feedback.validate.worker")
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor(1.0, 1), alias="champion")
    registry.add(regressor(2.0, 2), alias="challenger")
    produce(log, [e.encode() for e in labelled(1000, 3)])
    worker = make_worker(log, registry, clock, tmp_path)
    run_until(worker, clock, lambda: VERDICT in registry.versions[2].tags)
    tags = registry.versions[2].tags
    assert tags[VERDICT] == "pass" and float(tags["driftloop.validation.upper"]) < 0.0
    n = int(tags["driftloop.validation.n"])
    assert 30 <= n < 300
    assert tags["driftloop.validation.champion_version"] == "1"
    assert {k for k, _, step in registry.run_metrics["run2"]} >= {"driftloop.validation.upper"}
    assert all(step == n for _, _, step in registry.run_metrics["run2"])
    assert VERDICT not in registry.versions[1].tags  # the champion is never tagged
    assert metric(worker, "driftloop_validator_verdicts_total", {"verdict": "pass"}) == 1.0
    assert metric(worker, "driftloop_validator_rows_scored_total") == n
    read = metric(worker, "driftloop_validator_rows_read_total")
    skipped = sum(
        metric(worker, "driftloop_validator_rows_skipped_total", {"reason": r})
        for r in ("unused", "idle", "duplicate", "trained_on")
    )
    assert read == n + skipped  # every row read is scored or counted
    line = next(r.getMessage() for r in caplog.records if "PASS" in r.getMessage())
    assert f"on {n} paired examples" in line and "alpha=0.05" in line and "empirical-bernstein" in line
    # nothing more happens: the challenger has its verdict, it is not validated again
    for _ in range(20):
        worker.step()
        clock.advance(1.0)
    assert registry.verdicts_written(2) == ["pass"]


def test_a_worse_challenger_gets_fail(tmp_path: Path) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor(2.0, 1), alias="champion")
    registry.add(regressor(1.0, 2), alias="challenger")
    produce(log, [e.encode() for e in labelled(1000, 4)])
    worker = make_worker(log, registry, clock, tmp_path)
    run_until(worker, clock, lambda: VERDICT in registry.versions[2].tags)
    tags = registry.versions[2].tags
    assert tags[VERDICT] == "fail" and float(tags["driftloop.validation.lower"]) > 0.0
    assert metric(worker, "driftloop_validator_verdicts_total", {"verdict": "fail"}) == 1.0


def test_an_equal_challenger_is_inconclusive_at_the_budget(tmp_path: Path) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    model = regressor(2.0, 1)
    registry.add(model, alias="champion")
    registry.add(model, alias="challenger")
    produce(log, [e.encode() for e in labelled(600, 5)])
    worker = make_worker(log, registry, clock, tmp_path, max_examples=250)
    run_until(worker, clock, lambda: VERDICT in registry.versions[2].tags)
    tags = registry.versions[2].tags
    assert tags[VERDICT] == "inconclusive" and tags["driftloop.validation.exhausted"] == "true"
    assert tags["driftloop.validation.n"] == "250"
    assert float(tags["driftloop.validation.lower"]) < 0.0 < float(tags["driftloop.validation.upper"])


def test_a_newer_challenger_supersedes_the_one_in_progress(tmp_path: Path) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor(1.0, 1), alias="champion")
    registry.add(regressor(2.0, 2), alias="challenger")
    produce(log, [e.encode() for e in labelled(100, 6)])
    worker = make_worker(log, registry, clock, tmp_path, min_examples=5000, max_examples=5000)
    run_until(worker, clock, lambda: metric(worker, "driftloop_validator_examples") == 100)
    registry.add(regressor(2.0, 3), alias="challenger")  # the trainer cut a newer candidate
    clock.advance(5.0)
    worker.step()
    tags = registry.versions[2].tags
    assert tags[VERDICT] == "superseded" and tags["driftloop.validation.superseded_by"] == "3"
    assert tags["driftloop.validation.n"] == "100"
    assert worker.state is not None and worker.state.run is not None
    assert worker.state.run.challenger.version == 3 and worker.state.run.result().scored == 0
    produce(log, [e.encode() for e in labelled(300, 7, prefix="s")])
    run_until(worker, clock, lambda: metric(worker, "driftloop_validator_examples") == 300)
    assert VERDICT not in registry.versions[3].tags  # still running, on fresh rows only
    assert registry.verdicts_written(2) == ["superseded"]
    assert metric(worker, "driftloop_validator_verdicts_total", {"verdict": "superseded"}) == 1.0


def test_a_restart_resumes_the_same_test_and_never_writes_a_verdict_twice(tmp_path: Path) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor(1.0, 1), alias="champion")
    registry.add(regressor(2.0, 2), alias="challenger")
    rows = labelled(1000, 8)
    produce(log, [e.encode() for e in rows[:150]])
    first = make_worker(log, registry, clock, tmp_path, min_examples=250)
    run_until(first, clock, lambda: metric(first, "driftloop_validator_examples") == 150)
    first.save_state()  # as the state interval does; then the process dies (no close, no final save)
    produce(log, [e.encode() for e in rows[150:200]])
    first.step()  # read past the saved state, then killed: these rows are fed again after restart
    assert metric(first, "driftloop_validator_examples") == 200
    first.close()  # its group membership ends with the process (no state saved, nothing committed)

    second = make_worker(log, registry, clock, tmp_path, min_examples=250)
    for _ in range(3):
        second.step()
        clock.advance(1.0)
    assert second.state is not None and second.state.run is not None
    assert second.state.run.challenger.version == 2
    assert metric(second, "driftloop_validator_examples") == 200  # resumed at 150, fed 150..199 once
    produce(log, [e.encode() for e in rows[200:]])
    run_until(second, clock, lambda: VERDICT in registry.versions[2].tags)
    assert registry.verdicts_written(2) == ["pass"]
    assert registry.versions[2].tags["driftloop.validation.n"] == "250"  # 150 + 50 + 50: each row once
    for _ in range(10):  # and never again, however long it runs
        second.step()
        clock.advance(1.0)
    third = make_worker(log, registry, clock, tmp_path)  # a restart after the verdict
    for _ in range(10):
        third.step()
        clock.advance(1.0)
    assert registry.verdicts_written(2) == ["pass"]
    assert (
        third.state is not None and third.state.run is None and "already has verdict 'pass'" in third.status
    )


def test_a_crash_between_writing_the_verdict_and_saving_the_state_does_not_write_it_twice(
    tmp_path: Path,
) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor(1.0, 1), alias="champion")
    registry.add(regressor(2.0, 2), alias="challenger")
    first = make_worker(log, registry, clock, tmp_path)
    produce(log, [e.encode() for e in labelled(10, 17)])
    first.step()
    registry.unreachable = True  # the verdict is decided while MLflow is down: kept in the state
    produce(log, [e.encode() for e in labelled(500, 18, prefix="c")])
    run_until(first, clock, lambda: first.state is not None and bool(first.state.unpublished))
    pending = tmp_path / "pending.state"
    shutil.copy(first.store.path, pending)  # the state as saved before the verdict was written
    registry.unreachable = False
    run_until(first, clock, lambda: VERDICT in registry.versions[2].tags, steps=40)
    shutil.copy(pending, first.store.path)  # the crash: the save after the write never happened

    second = make_worker(log, registry, clock, tmp_path)
    run_until(second, clock, lambda: second.state is not None and not second.state.unpublished)
    for _ in range(10):
        second.step()
        clock.advance(1.0)
    assert registry.verdicts_written(2) == ["pass"]


def test_without_champion_or_challenger_it_waits_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "driftloop_feedback.validate.worker")
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    produce(log, [e.encode() for e in labelled(20, 9)])
    worker = make_worker(log, registry, clock, tmp_path)
    for _ in range(30):
        worker.step()
        clock.advance(1.0)
    assert "no version of 'pump-bearing-temp' has alias 'champion'" in worker.status
    assert caplog.text.count("has alias 'champion' yet") == 1
    assert metric(worker, "driftloop_validator_waiting", {"reason": "champion"}) == 1.0
    registry.add(regressor(1.0, 1), alias="champion")
    for _ in range(30):
        worker.step()
        clock.advance(1.0)
    assert "no challenger yet" in worker.status and caplog.text.count("no challenger yet") == 1
    assert metric(worker, "driftloop_validator_waiting", {"reason": "challenger"}) == 1.0
    assert metric(worker, "driftloop_validator_rows_skipped_total", {"reason": "idle"}) == 20.0


def test_no_labelled_topic_yet_waits_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "driftloop_feedback.validate.worker")
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor(1.0, 1), alias="champion")
    registry.add(regressor(2.0, 2), alias="challenger")
    worker = make_worker(log, registry, clock, tmp_path)
    for _ in range(12):
        assert worker.step() == 0
        clock.advance(1.0)
    assert caplog.text.count("no labelled topic 'driftloop.labelled' yet") == 1
    assert metric(worker, "driftloop_validator_waiting", {"reason": "topic"}) == 1.0
    produce(log, [e.encode() for e in labelled(500, 10)])
    run_until(worker, clock, lambda: VERDICT in registry.versions[2].tags)
    assert registry.versions[2].tags[VERDICT] == "pass"


def test_an_unreachable_registry_is_retried_with_backoff_and_the_verdict_waits(tmp_path: Path) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor(1.0, 1), alias="champion")
    registry.add(regressor(2.0, 2), alias="challenger")
    worker = make_worker(log, registry, clock, tmp_path)
    produce(log, [e.encode() for e in labelled(10, 11)])
    worker.step()
    assert worker.state is not None and worker.state.run is not None
    registry.unreachable = True
    produce(log, [e.encode() for e in labelled(500, 12, prefix="u")])
    run_until(worker, clock, lambda: worker.state is not None and bool(worker.state.unpublished))
    attempts: list[float] = []
    for _ in range(60):
        before = registry.calls
        worker.step()
        if registry.calls > before:
            attempts.append(clock.now)
        clock.advance(1.0)
    gaps = np.diff(attempts).tolist()
    assert len(gaps) >= 5 and gaps[-2:] == [16.0, 16.0]  # doubling from 2 s, capped at 16 s
    assert all(b in (a, 2 * a) for a, b in itertools.pairwise(gaps)) and gaps[0] < 16.0
    assert VERDICT not in registry.versions[2].tags and "registry failing" in worker.status
    assert metric(worker, "driftloop_validator_waiting", {"reason": "registry"}) == 1.0
    registry.unreachable = False
    run_until(worker, clock, lambda: VERDICT in registry.versions[2].tags, steps=40)
    assert registry.verdicts_written(2) == ["pass"]
    assert metric(worker, "driftloop_validator_waiting", {"reason": "registry"}) == 0.0


def test_rows_it_cannot_use_or_that_the_challenger_trained_on_are_counted(tmp_path: Path) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor(1.0, 1), alias="champion")
    window = {
        "window.offsets.driftloop.labelled/0": "0-40",
        "window.event_time_max": "1700000039.0",
        "window.last_example_id": "t39:0",
    }
    registry.add(regressor(2.0, 2), alias="challenger", params=window)
    trained = [e.encode() for e in labelled(40, 13, prefix="t")]  # offsets 0..39: the candidate's window
    good = labelled(30, 14, prefix="g")
    bad = [
        b"not json",
        good[0].encode(),  # a resend of a row already read
        replace(good[1], example_id="w:0", features=(1.0,)).encode(),  # one feature, the models take 2
        replace(good[1], example_id="n:0", features=(float("nan"), 1.0)).encode(),  # NaN: JSON null
        replace(good[1], example_id="s:0", truth="hot").encode(),  # a class label for a regressor
    ]
    produce(log, trained + [good[0].encode()] + bad + [e.encode() for e in good[1:]])
    worker = make_worker(log, registry, clock, tmp_path, min_examples=1000, max_examples=1000)
    run_until(worker, clock, lambda: metric(worker, "driftloop_validator_rows_read_total") == 40 + 1 + 5 + 29)
    counts = {
        r: metric(worker, "driftloop_validator_rows_skipped_total", {"reason": r})
        for r in ("trained_on", "undecodable", "duplicate", "features", "truth")
    }
    assert counts == {"trained_on": 40, "undecodable": 2, "duplicate": 1, "features": 1, "truth": 1}
    assert metric(worker, "driftloop_validator_rows_scored_total") == 30
    assert worker.state is not None and worker.state.run is not None
    assert worker.state.run.skipped["trained_on"] == 40


def test_the_models_are_scored_on_the_same_rows_the_state_holds_the_frozen_models(tmp_path: Path) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor(1.0, 1), alias="champion")
    registry.add(regressor(2.0, 2), alias="challenger")
    produce(log, [e.encode() for e in labelled(50, 16)])
    worker = make_worker(log, registry, clock, tmp_path, min_examples=1000, max_examples=1000)
    run_until(worker, clock, lambda: metric(worker, "driftloop_validator_examples") == 50)
    worker.save_state()
    saved = worker.store.load()
    assert saved is not None and saved.run is not None
    assert saved.run.result().scored == 50 and saved.offsets
    assert saved.run.champion.name == NAME


def test_a_new_champion_mid_validation_restarts_the_test_against_it(tmp_path: Path) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor(1.0, 1), alias="champion")
    registry.add(regressor(2.0, 2), alias="challenger")
    produce(log, [e.encode() for e in labelled(100, 19)])
    worker = make_worker(log, registry, clock, tmp_path, min_examples=5000, max_examples=5000)
    run_until(worker, clock, lambda: metric(worker, "driftloop_validator_examples") == 100)
    registry.aliases["champion"] = registry.add(regressor(1.5, 3))  # promoted by the rollout
    clock.advance(5.0)
    worker.step()
    assert worker.state is not None and worker.state.run is not None
    assert worker.state.run.champion.version == 3 and worker.state.run.challenger.version == 2
    assert worker.state.run.result().scored == 0
    assert VERDICT not in registry.versions[2].tags  # nothing written for the old pairing


def test_a_challenger_the_settings_cannot_judge_gets_no_verdict_and_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor(1.0, 1), alias="champion")
    registry.add(regressor(2.0, 2), alias="challenger")
    produce(log, [e.encode() for e in labelled(200, 20)])
    worker = make_worker(log, registry, clock, tmp_path, loss_bound=None)  # a regressor needs one
    for _ in range(30):
        worker.step()
        clock.advance(1.0)
    assert caplog.text.count("DRIFTLOOP_VALIDATION_LOSS_BOUND") == 1
    assert "cannot validate challenger v2" in worker.status
    assert metric(worker, "driftloop_validator_waiting", {"reason": "config"}) == 1.0
    assert registry.tag_writes == []


def test_every_example_of_a_batch_record_is_read_scored_or_counted(tmp_path: Path) -> None:
    """The joiner writes batch records (many examples each): the validator reads all of them."""
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor(1.0, 1), alias="champion")
    registry.add(regressor(2.0, 2), alias="challenger")
    rows = labelled(1000, 3)
    produce(log, encode_examples(rows, max_rows=50) + encode_examples(rows[:20]))  # 20 resent
    worker = make_worker(log, registry, clock, tmp_path)
    run_until(worker, clock, lambda: VERDICT in registry.versions[2].tags)
    for _ in range(5):
        worker.step()
        clock.advance(1.0)
    assert registry.versions[2].tags[VERDICT] == "pass"
    n = int(registry.versions[2].tags["driftloop.validation.n"])
    read = metric(worker, "driftloop_validator_rows_read_total")
    skipped = {
        r: metric(worker, "driftloop_validator_rows_skipped_total", {"reason": r})
        for r in ("unused", "idle", "duplicate", "trained_on")
    }
    assert read == 1020 and skipped["duplicate"] == 20
    assert read == n + sum(skipped.values())
