"""Which detector judges a window of model version v: one fitted on v's own drift reference.

References come from a ``ReferenceSource`` (the registry in production, a dict in unit tests). A
version's detector is fitted once and cached; a version without a reference falls back to the
registered drift detector's ``@champion`` (fitted on the champion's reference when it was published),
and when neither is there the window's verdict says why. Failed look-ups are retried after
``retry_s`` (the trainer may log a candidate's reference just after registering it; the registry may
be down for a while).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from driftloop.references import DriftReference
from driftloop_feedback.monitor.serial import lag1

Clock = Callable[[], float]


class ReferenceSource(Protocol):
    def reference(self, version: str) -> DriftReference:
        """Version ``version``'s reference; raises (any ``Exception``) with a message saying why not."""
        ...

    def fallback(self, version: str) -> tuple[object, tuple[str, ...] | None, str]:
        """A fitted drift detector to use instead, the feature names it tests (or None), and where it
        came from; raises with a message saying why there is none."""
        ...


@dataclass(frozen=True)
class VersionDetector:
    """A detector for one version's windows: test ``columns`` of the window's rows."""

    detector: object  # driftloop_servers.detectors.DriftDetector
    feature_names: tuple[str, ...]  # of the tested columns
    columns: tuple[int, ...] | None  # None: every column
    n_features: int  # columns a window's rows must have
    source: str
    reference_rows: int | None
    reference_lag1: np.ndarray | None = None  # per tested column, in stored order (serial.lag1)


@dataclass(frozen=True)
class NoDetector:
    reason: str


class VersionDetectors:
    """Fitted detectors per model version (cached), built from a ``ReferenceSource``."""

    def __init__(
        self,
        source: ReferenceSource,
        *,
        kind: str,
        options: dict[str, object],
        exclude_features: Sequence[str] = (),
        retry_s: float = 60.0,
        clock: Clock,
        max_cached: int = 16,
    ) -> None:
        self.source = source
        self.kind = kind
        self.options = options
        self.exclude = frozenset(exclude_features)
        self.retry_s = retry_s
        self.clock = clock
        self.max_cached = max_cached
        self._fitted: dict[str, VersionDetector] = {}
        self._missing: dict[str, tuple[float, NoDetector]] = {}

    def get(self, version: str) -> VersionDetector | NoDetector:
        found = self._fitted.get(version)
        if found is not None:
            return found
        missing = self._missing.get(version)
        if missing is not None and self.clock() < missing[0]:
            return missing[1]
        result = self._build(version)
        if isinstance(result, NoDetector):
            self._missing[version] = (self.clock() + self.retry_s, result)
        else:
            self._missing.pop(version, None)
            if len(self._fitted) >= self.max_cached:
                self._fitted.pop(next(iter(self._fitted)))
            self._fitted[version] = result
        return result

    def _build(self, version: str) -> VersionDetector | NoDetector:
        try:
            ref = self.source.reference(version)
        except Exception as exc:  # the registry reports many error types; each becomes the reason
            why = f"no drift reference for version {version!r}: {exc}"
            return self._fallback(version, why)
        names = ref.feature_names
        columns = tuple(i for i, n in enumerate(names) if n not in self.exclude)
        if not columns:
            return NoDetector(f"every feature of version {version!r} is excluded; test at least one")
        try:
            detector = self.fit(ref.data[:, columns])
        except Exception as exc:  # a detector backend's own errors: reported in the verdict
            return NoDetector(f"cannot fit {self.kind} on version {version!r}'s reference: {exc}")
        return VersionDetector(
            detector=detector,
            feature_names=tuple(names[i] for i in columns),
            columns=None if len(columns) == len(names) else columns,
            n_features=len(names),
            source=f"model version {version} reference",
            reference_rows=int(ref.data.shape[0]),
            reference_lag1=lag1(ref.data[:, columns]),
        )

    def fit(self, rows: np.ndarray) -> object:
        """A detector of this monitor's kind and options fitted on ``rows`` (the tested columns)."""
        from driftloop_servers.detectors import fit_drift_detector

        return fit_drift_detector(self.kind, rows, **self.options)

    def _fallback(self, version: str, why: str) -> VersionDetector | NoDetector:
        try:
            detector, names, source = self.source.fallback(version)
        except Exception as exc:  # as above: the message is the reason
            return NoDetector(f"{why}; no fallback either: {exc}")
        n = int(getattr(detector, "n_features", 0))
        if names is None or len(names) != n:
            names = tuple(f"f{j}" for j in range(n))
        return VersionDetector(
            detector=detector,
            feature_names=names,
            columns=None,
            n_features=n,
            source=f"{source} (fallback: {why})",
            reference_rows=None,
        )


def select_columns(x: np.ndarray, columns: tuple[int, ...] | None) -> np.ndarray:
    return x if columns is None else x[:, columns]
