"""Loading a detector artifact for a runtime: a local joblib file/folder or a ``models:/`` URI."""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlserver.logging import logger  # configured by MLServer (format, level, model context)
from mlserver.settings import ModelSettings

from driftloop_servers.artifacts import ArtifactRef, artifact_uri, detector_path
from driftloop_servers.detectors import DriftDetector, OutlierDetector, load_detector
from driftloop_servers.errors import ArtifactError, DetectorError


def load_runtime_detector(
    setting: str | None, model_settings: ModelSettings, tracking_uri: str
) -> tuple[OutlierDetector | DriftDetector, ArtifactRef]:
    uri = artifact_uri(setting, model_settings, "detector_uri")
    with tempfile.TemporaryDirectory(prefix="driftloop-detector-") as tmp:
        ref = detector_path(uri, model_settings, tracking_uri, Path(tmp))
        try:
            detector = load_detector(ref.local_path or Path(tmp))
        except DetectorError as exc:
            raise ArtifactError(f"model {model_settings.name!r}: detector {uri!r}: {exc}") from None
    version = f" = version {ref.version}" if ref.version else ""
    logger.info("model %r serves detector %s%s (%s)", model_settings.name, uri, version, detector.kind)
    return detector, ArtifactRef(uri=ref.uri, version=ref.version, local_path=None)
