"""A plant whose inputs drift in every monitor window: each round a drift event about the champion
and a slice of labelled rows arrive, the clock moves on, the trainer steps (the candidate-churn case of
NAB machine temperature and ELEC2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import orjson
from driftloop_feedback.learn.settings import CandidatePolicySettings, TrainerSettings
from driftloop_feedback.learn.worker import TrainerWorker
from prometheus_client import generate_latest

from driftloop.eventlog import EventLog
from tests.learn.helpers import FakeClock, examples, regression_rows

LABELLED = "driftloop.labelled"
DRIFT = "driftloop.drift"


def hold_settings(state_dir: Path, **policy: object) -> TrainerSettings:
    """Fast cuts as the replay sets them (5 s apart, on drift), holding on (900 s, looks every 5 s)."""
    values: dict[str, object] = {
        "min_examples": 50,
        "min_interval_s": 5.0,
        "drift_min_examples": 50,
        "every_n_examples": None,
        "every_s": None,
        "degradation_enabled": False,
        "hold_max_s": 900.0,
        "hold_check_s": 5.0,
    }
    values.update(policy)
    return TrainerSettings(
        state_dir=state_dir,
        batch_size=50,
        replay_capacity=100,
        poll_timeout_s=0.0,
        checkpoint_interval_s=1000.0,
        policy=CandidatePolicySettings.model_validate(values),
    )


@dataclass
class DriftingPlant:
    log: EventLog
    clock: FakeClock
    champion_version: str = "1"
    sent: int = 0
    seed: int = 100
    _topics: bool = field(default=False)

    def round(self, worker: TrainerWorker, rows: int = 100, seconds: float = 6.0, steps: int = 4) -> None:
        """A drift event and ``rows`` labelled rows arrive, ``seconds`` pass, the worker steps."""
        if not self._topics:
            self.log.create_topic(LABELLED, 1)
            self.log.create_topic(DRIFT, 1)
            self._topics = True
        producer = self.log.producer()
        event = {"predictor": "main", "model_version": self.champion_version, "is_drift": True}
        producer.send(DRIFT, orjson.dumps(event))
        X, y = regression_rows(rows, seed=self.seed + self.sent, shift=4.0)
        for e in examples(X, y, start=self.sent):
            producer.send(LABELLED, e.encode(), key=e.request_id.encode())
        producer.flush()
        self.sent += rows
        self.clock.advance(seconds)
        for _ in range(steps):
            worker.step()


def metric(worker: TrainerWorker, name: str) -> float:
    for line in generate_latest(worker.metrics.registry).decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no sample {name}")
