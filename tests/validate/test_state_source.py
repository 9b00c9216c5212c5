"""The validator's state is bound to its source: a state taken from another log is refused, naming
both, or with DRIFTLOOP_VALIDATOR_RESET_STATE moved aside (reading from this log's committed offsets)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from driftloop_feedback.validate.state import ValidatorStateSourceError
from driftloop_feedback.validate.worker import ValidatorWorker

from driftloop.eventlog import TopicPartition
from driftloop.eventlog.embedded import EmbeddedEventLog
from tests.validate.worker_helpers import (
    TOPIC,
    FakeClock,
    FakeRegistry,
    labelled,
    make_worker,
    metric,
    produce,
    run_until,
)

pytestmark = pytest.mark.integration
TP = TopicPartition(TOPIC, 0)


def read_to(worker: ValidatorWorker, clock: FakeClock, offset: int) -> None:
    run_until(worker, clock, lambda: worker.state is not None and worker.state.offsets.get(TP) == offset)


def test_a_state_taken_from_another_log_is_refused_or_reset(tmp_path: Path) -> None:
    registry, clock = FakeRegistry(), FakeClock()
    state_dir = tmp_path / "validator"
    a = EmbeddedEventLog(tmp_path / "a")
    produce(a, [e.encode() for e in labelled(150, 1, prefix="a")])
    first = make_worker(a, registry, clock, state_dir)
    read_to(first, clock, 150)
    first.save_state()
    first.close()

    b = EmbeddedEventLog(tmp_path / "b")  # 50 rows read and committed by the group, then 30 more
    rows_b = labelled(80, 2, prefix="b")
    produce(b, [e.encode() for e in rows_b[:50]])
    own = make_worker(b, registry, clock, tmp_path / "own")
    read_to(own, clock, 50)
    own.save_state()
    own.close()
    produce(b, [e.encode() for e in rows_b[50:]])

    refused = make_worker(b, registry, clock, state_dir)
    with pytest.raises(ValidatorStateSourceError) as error:
        refused.step()
    message = str(error.value)
    assert a.identity() in message and b.identity() in message
    assert "DRIFTLOOP_VALIDATOR_RESET_STATE" in message
    assert refused.consumer is None and refused.store.path.exists()  # left the group; state untouched

    reset = make_worker(b, registry, clock, state_dir)
    reset.settings = reset.settings.model_copy(update={"reset_state": True})
    read_to(reset, clock, 80)
    assert metric(reset, "driftloop_validator_rows_read_total") == 30  # from b's committed 50
    assert refused.store.path.with_name(refused.store.path.name + ".discarded").exists()
    reset.save_state()
    reset.close()
    again = make_worker(b, registry, clock, state_dir)  # the new state is bound to b
    again.step()
    assert again.state is not None and again.state.offsets[TP] == 80
    again.close()
    a.close()
    b.close()


def test_a_state_without_source_is_adopted_only_where_the_log_vouches_for_it(tmp_path: Path) -> None:
    registry, clock = FakeRegistry(), FakeClock()
    state_dir = tmp_path / "validator"
    a = EmbeddedEventLog(tmp_path / "a")
    produce(a, [e.encode() for e in labelled(60, 1, prefix="a")])
    first = make_worker(a, registry, clock, state_dir)
    read_to(first, clock, 60)
    first.save_state()
    first.close()
    saved = pickle.loads(first.store.path.read_bytes())
    del saved["state"].__dict__["source"]  # as the previous version pickled it
    first.store.path.write_bytes(pickle.dumps(saved))

    b = EmbeddedEventLog(tmp_path / "b")
    produce(b, [e.encode() for e in labelled(60, 2, prefix="b")])
    with pytest.raises(ValidatorStateSourceError, match="did not record its source"):
        make_worker(b, registry, clock, state_dir).step()
    adopted = make_worker(a, registry, clock, state_dir)
    adopted.step()
    assert adopted.state is not None and adopted.state.offsets[TP] == 60
    assert adopted.state.source is not None and adopted.state.source["log"] == a.identity()
    adopted.close()
    a.close()
    b.close()
