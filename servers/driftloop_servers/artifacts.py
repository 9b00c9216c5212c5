"""Where runtimes find their artifacts: an MLflow registry URI or a local path.

``models:/<name>@<alias>`` is resolved to the concrete version first and that version is loaded, so the
version a runtime reports is the one it serves even if the alias moves meanwhile.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import joblib
from mlserver.logging import logger  # configured by MLServer (format, level, model context)
from mlserver.settings import ModelSettings

from driftloop_servers.errors import ArtifactError

_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))/?$")
_LOCAL_MODEL_FILES = ("model.joblib", "model.pkl", "model.pickle")

_T = TypeVar("_T")
# MLServer loads a repository's models concurrently. Unpickling imports the estimator's modules, and two
# threads importing scikit-learn at once can see a partially initialised module ("cannot import name
# 'BaseLibSVM' from partially initialized module 'sklearn.svm._base'"). Imports are process-wide, so
# loading one artifact at a time per process costs nothing that could run in parallel anyway.
_LOAD_LOCK = threading.Lock()


async def load_off_loop(load: Callable[..., _T], *args: Any) -> _T:
    """Run a blocking artifact load in a worker thread, one load at a time in this process."""

    def locked() -> _T:
        with _LOAD_LOCK:
            return load(*args)

    return await asyncio.to_thread(locked)


@dataclass(frozen=True)
class ArtifactRef:
    """What a runtime loaded: the URI it was given and, for registry URIs, the resolved version."""

    uri: str
    version: str | None
    local_path: Path | None


def artifact_uri(setting: str | None, model_settings: ModelSettings, setting_name: str) -> str:
    """``parameters.uri`` when set, else the runtime's own setting (``model_uri`` / ``detector_uri``).

    ``parameters.uri`` is what the platform injects: Seldon's operator sets ``MLSERVER_MODEL_URI`` from the
    graph node's ``modelUri`` (MLServer reads it into ``parameters.uri`` when the model-settings.json leaves
    it out), and driftloop's local runtime writes it the same way, so a canary predictor's ``modelUri``
    must win over the folder's default.
    """
    platform = model_settings.parameters.uri if model_settings.parameters else None
    if platform and setting and platform != setting:
        logger.warning(
            "model %r: parameters.uri %r overrides parameters.extra.%s %r",
            model_settings.name,
            platform,
            setting_name,
            setting,
        )
    uri = platform or setting
    if not uri:
        raise ArtifactError(
            f"model {model_settings.name!r}: set parameters.extra.{setting_name} (or parameters.uri) to "
            "models:/<name>@<alias>, models:/<name>/<version> or a local path"
        )
    return uri


def local_path(uri: str, model_settings: ModelSettings) -> Path:
    """A local path (``file:`` prefix allowed); relative paths are relative to the model-settings folder."""
    raw = uri.removeprefix("file://").removeprefix("file:")
    path = Path(raw).expanduser()
    source = getattr(model_settings, "_source", None)
    if not path.is_absolute() and source:
        path = Path(source).parent / path
    if not path.exists():
        raise ArtifactError(f"model {model_settings.name!r}: artifact {uri!r} not found (looked at {path})")
    return path.resolve()


def is_registry_uri(uri: str) -> bool:
    return uri.startswith("models:/")


def resolve_registry_version(uri: str, tracking_uri: str) -> tuple[str, str]:
    """(registered model name, concrete version) of a ``models:/`` URI."""
    match = _REGISTRY_URI.match(uri)
    if match is None:
        raise ArtifactError(f"{uri!r} is not models:/<name>@<alias> or models:/<name>/<version>")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    name = match["name"]
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        if match["alias"]:
            version = client.get_model_version_by_alias(name, match["alias"]).version
        else:
            version = client.get_model_version(name, match["version"]).version
    except MlflowException as exc:
        raise ArtifactError(
            f"cannot resolve {uri!r} in the MLflow registry at {tracking_uri}: {exc.message}. "
            "Check the name/alias/version (driftloop registers models with alias 'champion')"
        ) from None
    return name, str(version)


def download_registry_version(name: str, version: str, tracking_uri: str, dst: Path) -> Path:
    """Download the artifacts of one registered version into ``dst``.

    The version's storage URI is looked up with a client bound to ``tracking_uri`` and downloaded directly:
    ``download_artifacts(artifact_uri="models:/...", registry_uri=...)`` resolves the name through the
    process-wide registry URI instead (MLflow 3.17 ``ModelsArtifactRepository._get_model_uri_infos``), which
    in an MLServer process is not driftloop's registry.
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        source = client.get_model_version_download_uri(name, version)
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=str(dst), tracking_uri=tracking_uri, registry_uri=tracking_uri
            )
        )
    except (MlflowException, OSError) as exc:
        raise ArtifactError(f"cannot download models:/{name}/{version} from {tracking_uri}: {exc}") from None


def load_estimator(uri: str, model_settings: ModelSettings, tracking_uri: str) -> tuple[Any, ArtifactRef]:
    """Load a scikit-learn estimator from the registry, an MLflow model directory or a joblib/pickle file."""
    if is_registry_uri(uri):
        name, version = resolve_registry_version(uri, tracking_uri)
        with tempfile.TemporaryDirectory(prefix="driftloop-model-") as tmp:
            folder = download_registry_version(name, version, tracking_uri, Path(tmp))
            estimator = _load_mlflow_sklearn(folder, uri)
        return estimator, ArtifactRef(uri=uri, version=version, local_path=None)
    path = local_path(uri, model_settings)
    if path.is_dir():
        if (path / "MLmodel").is_file():
            return _load_mlflow_sklearn(path, uri), ArtifactRef(uri=uri, version=None, local_path=path)
        found = next((path / f for f in _LOCAL_MODEL_FILES if (path / f).is_file()), None)
        if found is None:
            raise ArtifactError(
                f"{path} holds neither an MLflow model (MLmodel) nor one of {', '.join(_LOCAL_MODEL_FILES)}"
            )
        path = found
    return _load_joblib(path), ArtifactRef(uri=uri, version=None, local_path=path)


def _load_mlflow_sklearn(folder: Path, uri: str) -> Any:
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.sklearn.load_model(str(folder))
    except (MlflowException, OSError, ValueError) as exc:
        raise ArtifactError(
            f"cannot load {uri!r} as an MLflow scikit-learn model: {exc}. Log it with "
            "mlflow.sklearn.log_model(..., serialization_format='pickle')"
        ) from None


def _load_joblib(path: Path) -> Any:
    try:
        return joblib.load(path)
    except Exception as exc:  # unpickling reports many error types
        raise ArtifactError(f"cannot read {path} with joblib: {type(exc).__name__}: {exc}") from None


def detector_path(uri: str, model_settings: ModelSettings, tracking_uri: str, dst: Path) -> ArtifactRef:
    """Local file or folder holding a detector: downloaded into ``dst`` for registry URIs."""
    if is_registry_uri(uri):
        name, version = resolve_registry_version(uri, tracking_uri)
        folder = download_registry_version(name, version, tracking_uri, dst)
        return ArtifactRef(uri=uri, version=version, local_path=folder)
    return ArtifactRef(uri=uri, version=None, local_path=local_path(uri, model_settings))
