"""collect() on the memory event log, fed by each producer's own encoder."""

from __future__ import annotations

import pytest
from driftloop_feedback.monitor.verdict import DriftVerdict
from driftloop_feedback.report import ReportTopics, collect
from driftloop_feedback.report.candidates import read_candidates
from driftloop_feedback.rollout.events import EventWriter, RolloutEvent

from driftloop.eventlog import MemoryEventLog, TopicPartition
from tests.report.streams import example

TOPICS = ReportTopics()


def verdict(end: float, verdict: str = "no_drift", p: float = 0.3) -> DriftVerdict:
    return DriftVerdict(
        window_id=f"w{end}", predictor="main", model_version="1", window_start=end - 10, window_end=end,
        rows=50, closed_on="time", verdict=verdict,  # type: ignore[arg-type]
        is_drift=verdict == "drift", test="alibi-ks", correction="bonferroni", alpha=0.05, outlier_rate=0.0,
        p_values={"load": p, "speed": None},
    )  # fmt: skip


def fill(log: MemoryEventLog) -> None:
    producer = log.producer()
    for topic in (TOPICS.labelled, TOPICS.drift):
        log.create_topic(topic, 2)
    first, second = example(0, (1.0,), 2.0, 2.5), example(1, (2.0,), 3.0, 3.5, version="2")
    for e in (first, second, first):  # a joiner replay: the first example again, same id and content
        producer.send(TOPICS.labelled, e.encode(), key=e.request_id.encode(), timestamp_ms=5_000).get()
    producer.send(TOPICS.labelled, b'{"example_id": "x"}', key=b"bad").get()
    for v in (verdict(100.0), verdict(110.0, "drift", 1e-5)):
        producer.send(TOPICS.drift, v.to_json(), key=b"main").get()
    writer = EventWriter(log, TOPICS.rollouts)
    writer.write(
        RolloutEvent("plant/pump", "pump", "started", "progressing", candidate=2, champion=1, at=120.0)
    )
    writer.write(
        RolloutEvent("plant/other", "pump", "started", "progressing", candidate=9, champion=1, at=121.0)
    )
    writer.write(
        RolloutEvent("plant/pump", "pump", "promoted", "idle", candidate=2, champion=2, weight=0, at=130.0)
    )
    writer.close()


def test_collect_reads_each_topic_once_counting_duplicates_and_undecodable_records() -> None:
    log = MemoryEventLog()
    fill(log)
    records = collect(log, deployment="plant/pump", timeout_s=5)
    assert sorted(e.example.example_id for e in records.examples) == ["r0:0", "r1:0"]
    assert {e.log_time for e in records.examples} == {5.0}
    assert records.duplicates == 1
    assert records.undecodable == {TOPICS.labelled: 1}
    assert [d.verdict for d in sorted(records.drift, key=lambda d: d.window_end)] == ["no_drift", "drift"]
    assert records.drift[0].p_values["speed"] is None
    assert [(r.decision, r.candidate) for r in records.rollouts] == [("started", 2), ("promoted", 2)]
    assert records.candidates is None
    assert len(collect(log, timeout_s=5).rollouts) == 3  # every deployment without the filter


def test_collect_leaves_the_workers_groups_alone_and_reads_only_to_the_end_it_saw() -> None:
    log = MemoryEventLog()
    fill(log)
    trainer = log.consumer("driftloop-trainer", [TOPICS.labelled])
    while trainer.poll(0.05):
        pass
    trainer.commit()
    committed = {p: trainer.committed(TopicPartition(TOPICS.labelled, p)) for p in range(2)}
    assert collect(log, timeout_s=5).duplicates == 1
    assert {p: trainer.committed(TopicPartition(TOPICS.labelled, p)) for p in range(2)} == committed
    trainer.close()


def test_collect_of_an_empty_log_is_empty() -> None:
    records = collect(MemoryEventLog(), timeout_s=1)
    assert (records.examples, records.drift, records.rollouts, records.duplicates) == ([], [], [], 0)


class FakeVersions:
    def __init__(self, versions: list[tuple[int, dict[str, str]]]) -> None:
        self.versions = versions

    def model_versions(self, name: str) -> list[tuple[int, dict[str, str]]]:
        assert name == "pump"
        return self.versions


def test_candidates_are_the_versions_the_trainer_tagged_with_their_verdicts() -> None:
    source = FakeVersions(
        [
            (3, {"driftloop.kind": "candidate", "driftloop.parent_version": "1", "driftloop.trigger": "drift",
                 "driftloop.candidate_id": "c3", "driftloop.validation.verdict": "pass",
                 "driftloop.rollout.status": "rejected", "driftloop.rollout.reason": "2 failed checks"}),
            (1, {}),  # the initial model, registered by `driftloop train`
            (2, {"driftloop.kind": "candidate", "driftloop.parent_version": "1",
                 "driftloop.trigger": "every"}),
        ]
    )  # fmt: skip
    found = read_candidates(source, "pump")
    assert [(c.version, c.validation, c.rollout, c.reason) for c in found] == [
        (2, None, None, ""),
        (3, "pass", "rejected", "2 failed checks"),
    ]
    log = MemoryEventLog()
    assert collect(log, candidates=source, model_name="pump", timeout_s=1).candidates == found


def test_candidates_need_the_model_name() -> None:
    from driftloop_feedback.report import ReportError

    with pytest.raises(ReportError, match="model_name"):
        collect(MemoryEventLog(), candidates=FakeVersions([]), timeout_s=1)
