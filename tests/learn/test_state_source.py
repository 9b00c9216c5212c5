"""The trainer's checkpoint is bound to its source: one taken from another log is refused, naming both,
or with DRIFTLOOP_TRAINER_RESET_STATE moved aside (the trainer starts again from the champion and this
log's committed offsets)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from driftloop_feedback.learn.errors import CheckpointSourceError
from driftloop_feedback.learn.worker import TrainerWorker

from driftloop.eventlog.embedded import EmbeddedEventLog
from tests.learn.helpers import FakeClock, FakeRegistry, examples, regression_rows, regressor_champion
from tests.learn.test_worker import make_settings, produce, run_until

pytestmark = pytest.mark.integration


def labelled_log(path: Path, n: int, prefix: str) -> EmbeddedEventLog:
    log = EmbeddedEventLog(path)
    X, y = regression_rows(n, len(prefix))
    produce(log, [e.encode() for e in examples(X, y, prefix=prefix)])  # type: ignore[arg-type]
    return log


def learned(worker: TrainerWorker, n: int) -> None:
    run_until(worker, lambda: worker.state is not None and worker.state.challenger.learned == n)


def test_a_checkpoint_taken_from_another_log_is_refused_or_reset(tmp_path: Path) -> None:
    registry, clock = FakeRegistry(), FakeClock()
    registry.add(regressor_champion(), alias="champion")
    settings = make_settings(tmp_path, every_n_examples=None)
    a = labelled_log(tmp_path / "a", 150, "a")
    first = TrainerWorker(a, registry, settings, clock=clock)
    learned(first, 150)
    first.checkpoint()
    first.close()

    b = labelled_log(tmp_path / "b", 60, "b")  # 60 learned and committed by the group, then 40 more
    own = TrainerWorker(b, registry, settings.model_copy(update={"state_dir": tmp_path / "own"}), clock=clock)
    learned(own, 60)
    own.checkpoint()
    own.close()
    X, y = regression_rows(40, 9)
    produce(b, [e.encode() for e in examples(X, y, prefix="c")])  # type: ignore[arg-type]

    refused = TrainerWorker(b, registry, settings, clock=clock)
    with pytest.raises(CheckpointSourceError) as error:
        refused.step()
    message = str(error.value)
    assert a.identity() in message and b.identity() in message
    assert "DRIFTLOOP_TRAINER_RESET_STATE" in message
    assert refused.consumer is None and refused.store.path.exists()  # left the group; file untouched

    reset = TrainerWorker(b, registry, settings.model_copy(update={"reset_state": True}), clock=clock)
    learned(reset, 40)  # from b's committed offsets: only the 40 after them, from the champion
    for _ in range(3):
        reset.step()
    assert reset.state is not None and reset.state.challenger.learned == 40 and reset.state.consumed == 40
    assert reset.store.path.with_name(reset.store.path.name + ".discarded").exists()
    reset.checkpoint()
    reset.close()
    again = TrainerWorker(b, registry, settings, clock=clock)  # the new checkpoint is bound to b
    again.step()
    assert again.state is not None and again.state.challenger.learned == 40
    again.close()
    a.close()
    b.close()


def test_a_checkpoint_without_source_is_adopted_only_where_the_log_vouches_for_it(tmp_path: Path) -> None:
    registry, clock = FakeRegistry(), FakeClock()
    registry.add(regressor_champion(), alias="champion")
    settings = make_settings(tmp_path, every_n_examples=None)
    a = labelled_log(tmp_path / "a", 100, "a")
    first = TrainerWorker(a, registry, settings, clock=clock)
    learned(first, 100)
    first.checkpoint()
    first.close()
    saved = pickle.loads(first.store.path.read_bytes())
    del saved["state"].__dict__["sources"]  # as the previous version pickled it
    first.store.path.write_bytes(pickle.dumps(saved))

    b = labelled_log(tmp_path / "b", 400, "b")  # its offsets lie within b: only vouching tells
    with pytest.raises(CheckpointSourceError, match="did not record its source"):
        TrainerWorker(b, registry, settings, clock=clock).step()
    adopted = TrainerWorker(a, registry, settings, clock=clock)
    adopted.step()
    assert adopted.state is not None and adopted.state.challenger.learned == 100
    assert adopted.state.sources is not None and adopted.state.sources["labelled"]["log"] == a.identity()
    adopted.close()
    a.close()
    b.close()
