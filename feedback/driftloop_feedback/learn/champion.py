"""The champion the challenger starts from: ``models:/<name>@champion`` loaded from the registry, with
its training-time error (the baseline of the degradation rule) and its feature names, both read from the
run that registered it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from driftloop.registry import ModelVersionRef, RegistryError
from driftloop_feedback.learn.challenger import task_of
from driftloop_feedback.learn.errors import ChampionUnavailable

# The training-time error of each task, by the run metric that holds it (first found wins). A
# regressor's is the validation MAE; a classifier's the validation error rate (or 1 - accuracy).
BASELINE_METRICS = {"regression": ("val_mae",), "classification": ("val_error", "val_accuracy")}


class ChampionRegistry(Protocol):
    def get_alias(self, name: str, alias: str) -> ModelVersionRef: ...

    def load_sklearn_model(self, uri: str) -> Any: ...

    def run_data(self, run_id: str) -> tuple[dict[str, str], dict[str, float], dict[str, str]]: ...


@dataclass(frozen=True)
class Champion:
    version: int
    run_id: str | None
    model: Any
    baseline: float | None
    feature_names: list[str]


def training_error(task: str, metrics: dict[str, float]) -> float | None:
    for name in BASELINE_METRICS[task]:
        if name in metrics:
            return 1.0 - metrics[name] if name == "val_accuracy" else metrics[name]
    return None


def feature_names_of(params: dict[str, str], tags: dict[str, str], n_features: int | None) -> list[str]:
    names = tags.get("driftloop.feature_names") or params.get("feature_names") or ""
    found = [n for n in names.split(",") if n]
    if n_features is not None and len(found) != n_features:
        return [f"f{i}" for i in range(n_features)]
    return found


def current_version(registry: ChampionRegistry, name: str, alias: str) -> int:
    try:
        return registry.get_alias(name, alias).version
    except RegistryError as exc:
        raise ChampionUnavailable(str(exc)) from exc


def load_champion(registry: ChampionRegistry, name: str, alias: str) -> Champion:
    """Raises ``ChampionUnavailable`` (no version has the alias yet); other errors (an unreachable
    registry) propagate for the caller to retry."""
    try:
        ref = registry.get_alias(name, alias)
    except RegistryError as exc:
        raise ChampionUnavailable(str(exc)) from exc
    model = registry.load_sklearn_model(ref.uri)
    params: dict[str, str] = {}
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    if ref.run_id:
        params, metrics, tags = registry.run_data(ref.run_id)
    return Champion(
        version=ref.version,
        run_id=ref.run_id,
        model=model,
        baseline=training_error(task_of(model), metrics),
        feature_names=feature_names_of(params, tags, getattr(model, "n_features_in_", None)),
    )
