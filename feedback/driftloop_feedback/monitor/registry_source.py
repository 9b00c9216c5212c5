"""References from the MLflow registry: a version's ``drift-reference/`` run artifact, else the
registered drift detector ``<fallback>@champion``."""

from __future__ import annotations

import tempfile
from pathlib import Path

from driftloop.references import DriftReference, load_reference
from driftloop.registry import MlflowRegistry


class RegistryReferenceSource:
    def __init__(self, registry: MlflowRegistry, model_name: str, fallback_drift_model: str | None) -> None:
        self.registry = registry
        self.model_name = model_name
        self.fallback_drift_model = fallback_drift_model

    def reference(self, version: str) -> DriftReference:
        if not version.isdigit():
            raise ValueError(f"{version!r} is not a registered version number of {self.model_name!r}")
        return load_reference(self.registry, self.model_name, int(version))

    def fallback(self, version: str) -> tuple[object, tuple[str, ...] | None, str]:
        from driftloop_servers.detectors import DriftDetector, load_detector

        if not self.fallback_drift_model:
            raise ValueError("no fallback drift model is configured (DRIFTLOOP_MONITOR_FALLBACK_DRIFT_MODEL)")
        uri = f"models:/{self.fallback_drift_model}@champion"
        ref = self.registry.resolve(uri)
        with tempfile.TemporaryDirectory(prefix="driftloop-monitor-") as tmp:
            detector = load_detector(self.registry.download(ref.uri, Path(tmp)))
        if not isinstance(detector, DriftDetector):
            raise ValueError(f"{ref.uri} holds a {type(detector).__name__}, not a drift detector")
        names: tuple[str, ...] | None = None
        if ref.run_id is not None:  # publish_detectors logs the columns the detector was fitted on
            try:
                listed = self.registry.run_data(ref.run_id)[0].get("feature_names")
            except Exception:  # names are a nicety: the detector works without them
                listed = None
            names = tuple(listed.split(",")) if listed else None
        return detector, names, ref.uri
