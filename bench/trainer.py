"""Trainer benchmark: ``python -m bench trainer``.

1. Examples/s from the labelled topic (embedded log, 4 partitions) through the trainer (poll, dedupe,
   decode, check, test-then-train scoring of challenger and champion, replay mixed in at the default
   ratio, ``partial_fit``, checkpoints) against bare ``partial_fit`` of the same estimator on the same
   batches, in the same run; printed as a ratio (goal >= 0.8x). "The same batches" are exactly the
   arrays the trainer passed to ``partial_fit`` (new rows plus the replayed rows mixed into them),
   recorded during the trainer's run and replayed on a fresh copy of the champion. Both rates count
   the same thing: labelled examples (new rows) per second of wall time; replayed rows are work both
   sides do, not examples counted. An unmeasured warm-up round, then three rounds on fresh topics;
   the median ratio is the figure.
2. Candidate registration in a real MLflow sqlite registry (run, model with signature and explicit
   requirements, version, drift reference, alias): seconds per candidate.

``DRIFTLOOP_BENCH_QUICK=1`` uses a fifth of the examples.
"""

from __future__ import annotations

import copy
import gc
import os
import pickle
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from driftloop_feedback.labelled_batch import encode_examples
from driftloop_feedback.learn.candidates import Candidate, CandidateRegistrar
from driftloop_feedback.learn.settings import CandidatePolicySettings, TrainerSettings
from driftloop_feedback.learn.worker import TrainerWorker
from driftloop_feedback.records import LabelledExample
from driftloop_servers.estimators import IncrementalRegressor

from driftloop.eventlog import send_many
from driftloop.eventlog.embedded import EmbeddedEventLog
from driftloop.registry import MlflowRegistry, ModelVersionRef, RegistryError

QUICK = os.environ.get("DRIFTLOOP_BENCH_QUICK") == "1"
EXAMPLES = 8_000 if QUICK else 40_000
FEATURES = 8
ROUNDS = 3
TOPIC = "driftloop.labelled"
PARTITIONS = 4
RECORD_ROWS = int(os.environ.get("DRIFTLOOP_BENCH_TRAINER_RECORD_ROWS", "1000"))  # examples per batch record
JSON_RECORDS = os.environ.get("DRIFTLOOP_BENCH_TRAINER_JSON") == "1"


_FITTED: list[tuple[np.ndarray, np.ndarray]] = []  # what the trainer's challenger passed to partial_fit
_RECORDING = [False]
_FIT_SECONDS = [0.0]  # time inside the trainer's own partial_fit calls


class _RecordingRegressor(IncrementalRegressor):
    """The benchmark's estimator: records each ``partial_fit`` batch (by reference, outside the
    instance, so that checkpoints do not carry it) for the bare peer to replay."""

    def partial_fit(self, X: Any, y: Any) -> _RecordingRegressor:
        if not _RECORDING[0]:
            super().partial_fit(X, y)
            return self
        _FITTED.append((X, y))
        start = time.perf_counter()
        super().partial_fit(X, y)
        _FIT_SECONDS[0] += time.perf_counter() - start
        return self


class _ChampionOnly:
    """A registry holding one champion (registration is measured apart, in part 2)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def get_alias(self, name: str, alias: str) -> ModelVersionRef:
        if alias != "champion":
            raise RegistryError(f"no {alias}")
        return ModelVersionRef(name, 1, None, "bench://1")

    def load_sklearn_model(self, uri: str) -> Any:
        return copy.deepcopy(self.model)

    def run_data(self, run_id: str) -> tuple[dict[str, str], dict[str, float], dict[str, str]]:
        return {}, {}, {}

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"the benchmark registers nothing ({name})")


def _data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(EXAMPLES, FEATURES))
    return X, 40 + X @ rng.normal(size=FEATURES) + rng.normal(scale=0.1, size=EXAMPLES)


def _champion() -> IncrementalRegressor:
    rng = np.random.default_rng(99)
    X = rng.normal(size=(1000, FEATURES))
    return _RecordingRegressor(random_state=0, epochs=2).fit(X, X.sum(axis=1))


def _produce(log: EmbeddedEventLog, X: np.ndarray, y: np.ndarray, served: np.ndarray) -> None:
    """Labelled examples as the joiner writes them for requests the champion (version 1) served: its
    prediction in each. The joiner writes a batch record per shard flush to the shard's partition; here
    the examples go round-robin to the 4 partitions, ``RECORD_ROWS`` examples per record (JSON records,
    one example each, with ``DRIFTLOOP_BENCH_TRAINER_JSON=1``: the format before batch records)."""
    log.create_topic(TOPIC, PARTITIONS)
    producer = log.producer()
    examples = [
        LabelledExample(
            f"r{i}:0",
            f"r{i}",
            0,
            tuple(row),
            prediction,
            target,
            "main",
            "1",
            1.7e9 + i,
            1.7e9 + i + 1800,
            "request",
        )
        for i, (row, target, prediction) in enumerate(
            zip(X.tolist(), y.tolist(), served.tolist(), strict=True)
        )
    ]
    for p in range(PARTITIONS):
        mine = examples[p::PARTITIONS]
        if JSON_RECORDS:
            send_many(producer, TOPIC, [(e.request_id.encode(), e.encode()) for e in mine], partition=p)
        else:
            send_many(
                producer, TOPIC, [(None, v) for v in encode_examples(mine, max_rows=RECORD_ROWS)], partition=p
            )
    producer.flush()


def _trainer_round(tmp: Path, champion: IncrementalRegressor, seed: int) -> tuple[float, float]:
    """(trainer examples/s, bare partial_fit examples/s) on one fresh topic."""
    X, y = _data(seed)
    log = EmbeddedEventLog(tmp / f"log{seed}")
    _produce(log, X, y, champion.predict(X))
    settings = TrainerSettings(
        state_dir=tmp / f"trainer{seed}",
        poll_timeout_s=0.01,
        policy=CandidatePolicySettings(every_n_examples=None, every_s=None, degradation_enabled=False),
    )
    worker = TrainerWorker(log, _ChampionOnly(champion), settings)
    _FITTED.clear()
    _FIT_SECONDS[0] = 0.0
    _RECORDING[0] = True
    gc.collect()
    gc.freeze()  # as ``TrainerWorker.run`` does once started: the start-up heap out of collections
    start = time.perf_counter()
    while worker.state is None or worker.state.challenger.learned < EXAMPLES:
        worker.step()
    trainer_s = time.perf_counter() - start
    _RECORDING[0] = False
    gc.unfreeze()
    worker.close()
    log.close()
    # exactly the batches the trainer passed to partial_fit (new + replayed rows), bare: arrays ready,
    # no reading, no scoring, on a fresh copy of the champion
    fitted = list(_FITTED)
    _FITTED.clear()
    rows = sum(len(b[1]) for b in fitted)
    assert rows >= EXAMPLES, f"the trainer fitted {rows} rows for {EXAMPLES} examples"
    own_fit_s = _FIT_SECONDS[0]
    print(
        f"  partial_fit calls {len(fitted)}, rows fitted {rows:,} ({rows - EXAMPLES:,} replayed); in the "
        f"trainer's {trainer_s:.2f} s its partial_fit took {own_fit_s:.2f} s ({own_fit_s / trainer_s:.0%}), "
        f"everything else {(trainer_s - own_fit_s) / EXAMPLES * 1e6:.1f} us per example"
    )
    bare = copy.deepcopy(champion)
    start = time.perf_counter()
    for X_fit, y_fit in fitted:
        bare.partial_fit(X_fit, y_fit)
    bare_s = time.perf_counter() - start
    return EXAMPLES / trainer_s, EXAMPLES / bare_s


def _registration(tmp: Path, champion: IncrementalRegressor, count: int = 5) -> float:
    registry = MlflowRegistry(f"sqlite:///{tmp / 'mlflow.db'}", tmp / "mlartifacts")
    registrar = CandidateRegistrar(registry, "bench-model", "challenger")
    reference = np.random.default_rng(0).normal(size=(500, FEATURES))
    names = [f"f{i}" for i in range(FEATURES)]

    def candidate() -> Candidate:
        return Candidate(
            uuid.uuid4().hex,
            "schedule",
            1,
            0.0,
            pickle.dumps(champion),
            {"estimator": "x"},
            {"m": 1.0},
            reference,
            names,
        )

    registrar.register(candidate())  # warm-up: creates the experiment and the registered model
    start = time.perf_counter()
    for _ in range(count):
        registrar.register(candidate())
    return (time.perf_counter() - start) / count


def main() -> None:
    champion = _champion()
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-trainer-") as tmp:
        # an unmeasured round first: the first trainer run in a process pays its start-up (first calls
        # of each code path, allocations) and the bare peer after it does not; round 0 was the lowest
        # in five runs of six before this warm-up
        warm_trainer, warm_bare = _trainer_round(Path(tmp), champion, 100)
        print(f"warm-up round (not counted): ratio {warm_trainer / warm_bare:.2f}x", flush=True)
        ratios = []
        for seed in range(ROUNDS):
            trainer_rate, bare_rate = _trainer_round(Path(tmp), champion, seed)
            ratios.append(trainer_rate / bare_rate)
            print(
                f"round {seed}: trainer {trainer_rate:,.0f} examples/s, bare partial_fit {bare_rate:,.0f} "
                f"examples/s, ratio {trainer_rate / bare_rate:.2f}x",
                flush=True,
            )
        median = statistics.median(ratios)
        print(f"trainer / bare partial_fit (median of {ROUNDS}): {median:.2f}x (goal >= 0.8x)")
        per_candidate = _registration(Path(tmp), champion)
        print(
            f"candidate registration (run + model + version + reference + alias): {per_candidate:.3f} s each"
        )


if __name__ == "__main__":
    main()
