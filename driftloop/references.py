"""The drift reference that travels with a registered model version.

A reference is a float64 [N, F] sample of the rows a model version was trained on, with the feature
names in column order. It is stored as an artifact folder (``drift-reference/``: ``reference.npy`` and
``reference.json``) of the MLflow run behind the version, so whoever serves or watches version v finds
v's reference through the registry: the drift monitor tests a window of v's traffic against it, and after
a promotion the reference follows the new champion.

``log_reference`` is called by whoever registers a version (``publish_model`` for the initial
forecaster, the trainer for each candidate); ``load_reference`` by the drift monitor.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from driftloop.errors import DriftloopError
from driftloop.registry import MlflowRegistry

REFERENCE_ARTIFACT_PATH = "drift-reference"
_DATA_FILE = "reference.npy"
_META_FILE = "reference.json"
_FORMAT = 1


class DriftReferenceError(DriftloopError):
    """A drift reference cannot be written or read; the message says what to fix."""


class ReferenceNotFound(DriftReferenceError):
    """The model version's run holds no drift reference."""


@dataclass(frozen=True)
class DriftReference:
    """Reference rows (float64 [N, F]) and their feature names, in column order."""

    data: np.ndarray
    feature_names: tuple[str, ...]

    def __post_init__(self) -> None:
        check_reference(self.data, self.feature_names)


def check_reference(data: np.ndarray, feature_names: Sequence[str]) -> None:
    if data.ndim != 2 or data.shape[0] < 2:
        raise DriftReferenceError(
            f"a drift reference is a [N, F] matrix with N >= 2; got shape {list(data.shape)}"
        )
    if len(feature_names) != data.shape[1]:
        raise DriftReferenceError(
            f"{len(feature_names)} feature names for {data.shape[1]} reference columns; name every column"
        )
    if not np.isfinite(data).all():
        raise DriftReferenceError("the drift reference holds NaN/inf; drop or impute those rows first")


def write_reference(folder: Path, data: np.ndarray, feature_names: Sequence[str]) -> Path:
    """Write a reference into ``folder`` (the artifact layout); returns the folder."""
    array = np.ascontiguousarray(data, dtype=np.float64)
    names = [str(n) for n in feature_names]
    check_reference(array, names)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / _DATA_FILE, array, allow_pickle=False)
    meta = {"format": _FORMAT, "feature_names": names, "rows": int(array.shape[0])}
    (folder / _META_FILE).write_text(json.dumps(meta))
    return folder


def read_reference(folder: Path) -> DriftReference:
    """Read a reference written by ``write_reference``."""
    try:
        meta = json.loads((folder / _META_FILE).read_text())
        data = np.load(folder / _DATA_FILE, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DriftReferenceError(f"cannot read the drift reference in {folder}: {exc}") from exc
    if meta.get("format") != _FORMAT:
        raise DriftReferenceError(
            f"{folder} holds reference format {meta.get('format')}; this reads {_FORMAT}"
        )
    return DriftReference(np.asarray(data, dtype=np.float64), tuple(meta["feature_names"]))


def log_reference(
    registry: MlflowRegistry, run_id: str, array: np.ndarray, feature_names: Sequence[str]
) -> None:
    """Store ``array`` (float64 [N, F]) and ``feature_names`` as the drift reference of run ``run_id``
    (the run a model version is registered from)."""
    with tempfile.TemporaryDirectory(prefix="driftloop-reference-") as tmp:
        folder = write_reference(Path(tmp) / REFERENCE_ARTIFACT_PATH, np.asarray(array), feature_names)
        registry.log_run_artifacts(run_id, folder, REFERENCE_ARTIFACT_PATH)


def load_reference(registry: MlflowRegistry, name: str, version: int | str) -> DriftReference:
    """The drift reference of version ``version`` of model ``name``.

    Raises ``ReferenceNotFound`` when that version's run has none (e.g. registered before references
    were logged) and ``RegistryError`` when the version does not exist or the registry is unreachable.
    """
    ref = registry.get_version(name, int(version))
    if ref.run_id is None:
        raise ReferenceNotFound(f"{name} version {version} has no run, so no drift reference")
    with tempfile.TemporaryDirectory(prefix="driftloop-reference-") as tmp:
        local = registry.download_run_artifacts(ref.run_id, REFERENCE_ARTIFACT_PATH, Path(tmp))
        if local is None:
            raise ReferenceNotFound(
                f"{name} version {version} (run {ref.run_id}) has no {REFERENCE_ARTIFACT_PATH}/ artifact; "
                "register versions through driftloop (publish_model / the trainer) to log one"
            )
        return read_reference(local)
