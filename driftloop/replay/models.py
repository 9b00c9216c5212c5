"""The named models a replay can run (``--model NAME``), per task. Each has the incremental contract
of ``driftloop_servers.estimators`` (``partial_fit``, ``n_samples_seen_``, classes declared up front),
so the trainer and the validator treat every one of them alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from driftloop_servers.estimators import (
    IncrementalClassifier,
    IncrementalRegressor,
    WindowClassifier,
    WindowRegressor,
)

from driftloop.replay.errors import ReplayError
from driftloop.replay.table import Task

MODELS: dict[Task, dict[str, tuple[Callable[[int], Any], str]]] = {
    "regression": {
        "sgd": (
            lambda seed: IncrementalRegressor(random_state=seed),
            "SGD (Huber) on incrementally scaled X, y",
        ),
        "window-gbt": (
            lambda seed: WindowRegressor(random_state=seed),
            "gradient-boosted trees refit on the last 3000 labelled rows every 50",
        ),
    },
    "classification": {
        "sgd": (lambda seed: IncrementalClassifier(random_state=seed), "SGD logistic regression, scaled X"),
        "window-gbt": (
            lambda seed: WindowClassifier(random_state=seed),
            "gradient-boosted trees refit on the last 3000 labelled rows every 50",
        ),
    },
}
DEFAULT_MODEL = "sgd"  # better and faster than window-gbt on ELEC2 (docs/replay.md)


def make_model(task: Task, name: str, seed: int = 0) -> Any:
    """A fresh estimator of model ``name`` for ``task``."""
    known = MODELS[task]
    if name not in known:
        raise ReplayError(f"--model {name!r} is not a {task} model: pick one of {', '.join(sorted(known))}")
    return known[name][0](seed)
