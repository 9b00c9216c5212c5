"""The model registry port and its MLflow adapter.

driftloop registers three kinds of things: the forecaster (an MLflow sklearn model, pickled so that
mlserver-sklearn and driftloop's runtime can read it), and the outlier and drift detectors (a run
artifact folder holding ``detector.joblib``, registered as a model version whose source is that folder).
Serving resolves ``models:/<name>@<alias>``; the trainer and the rollout controller move aliases.

Everything goes through an ``MlflowClient`` bound to one tracking URI: no global ``mlflow`` state is
touched, so two registries (e.g. a test's and the user's) can live in one process.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from driftloop.errors import DriftloopError
from driftloop.settings import StateSettings

DEFAULT_EXPERIMENT = "driftloop"
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


class RegistryError(DriftloopError):
    """A registry operation failed; the message names the model/alias and what to check."""


@dataclass(frozen=True)
class ModelVersionRef:
    """One registered model version."""

    name: str
    version: int
    run_id: str | None
    source: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def parse_models_uri(uri: str) -> tuple[str, str | None, int | None]:
    """``models:/name@alias`` -> (name, alias, None); ``models:/name/3`` -> (name, None, 3)."""
    match = _MODELS_URI.match(uri)
    if not match:
        raise RegistryError(
            f"{uri!r} is not a registry URI: use models:/<name>@<alias> or models:/<name>/<n>"
        )
    version = match.group("version")
    return match.group("name"), match.group("alias"), int(version) if version else None


def is_server_uri(tracking_uri: str) -> bool:
    """True for an MLflow tracking server reached over HTTP(S), False for a local store (sqlite, file, a
    database URI opened by the client itself)."""
    return tracking_uri.split(":", 1)[0].lower() in {"http", "https"}


class MlflowRegistry:
    """Register models and detector folders in MLflow, move aliases, resolve ``models:/`` URIs."""

    def __init__(
        self, tracking_uri: str, artifact_root: Path | None = None, experiment: str = DEFAULT_EXPERIMENT
    ) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        # A tracking server decides where artifacts go (``mlflow-artifacts:/`` when it serves them): a
        # local folder named here would be one only this machine can read.
        self._artifact_root = None if is_server_uri(tracking_uri) else artifact_root
        self._experiment = experiment
        self._experiment_id: str | None = None

    @classmethod
    def from_state(cls, state: StateSettings | None = None) -> MlflowRegistry:
        """The registry of ``DRIFTLOOP_MLFLOW_TRACKING_URI``, else of the state folder ``DRIFTLOOP_HOME``."""
        state = state or StateSettings()
        return cls(state.tracking_uri(), state.artifact_root())

    # -- runs ---------------------------------------------------------------------------------------
    def _experiment_id_(self) -> str:
        if self._experiment_id is None:
            found = self._client.get_experiment_by_name(self._experiment)
            if found is not None:
                self._experiment_id = str(found.experiment_id)
            else:
                location = (self._artifact_root / self._experiment).as_uri() if self._artifact_root else None
                self._experiment_id = str(self._client.create_experiment(self._experiment, location))
        return self._experiment_id

    def _start_run(
        self, run_name: str, params: Mapping[str, Any], metrics: Mapping[str, float], tags: Mapping[str, str]
    ) -> str:
        from mlflow.entities import Metric, Param, RunTag

        run = self._client.create_run(self._experiment_id_(), run_name=run_name, tags=dict(tags))
        run_id = str(run.info.run_id)
        self._client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )
        return run_id

    def _register(
        self,
        name: str,
        run_id: str,
        artifact_path: str,
        alias: str | None,
        version_tags: Mapping[str, str] | None = None,
    ) -> ModelVersionRef:
        from mlflow.exceptions import MlflowException

        source = f"{self._client.get_run(run_id).info.artifact_uri}/{artifact_path}"
        try:
            self._client.get_registered_model(name)
        except MlflowException:
            self._client.create_registered_model(name)
        mv = self._client.create_model_version(
            name, source=source, run_id=run_id, tags={k: str(v) for k, v in (version_tags or {}).items()}
        )
        self._client.set_terminated(run_id)
        ref = ModelVersionRef(name=name, version=int(mv.version), run_id=run_id, source=source)
        if alias:
            self.set_alias(name, alias, ref.version)
        return ref

    # -- registering ---------------------------------------------------------------------------------
    def register_sklearn_model(
        self,
        name: str,
        model: Any,
        *,
        input_example: np.ndarray,
        pip_requirements: Sequence[str],
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        alias: str | None = None,
        version_tags: Mapping[str, str] | None = None,
        run_name: str | None = None,
    ) -> ModelVersionRef:
        """Log ``model`` as an MLflow sklearn model (pickle, explicit signature and requirements) in a new
        run, register it as a new version of ``name`` (tagged ``version_tags``) and optionally point
        ``alias`` at it."""
        import mlflow.sklearn
        from mlflow.models import infer_signature

        signature = infer_signature(input_example, np.asarray(model.predict(input_example)))
        run_id = self._start_run(run_name or f"{name}-train", params or {}, metrics or {}, tags or {})
        with tempfile.TemporaryDirectory(prefix="driftloop-model-") as tmp:
            local = Path(tmp) / "model"
            mlflow.sklearn.save_model(
                model,
                str(local),
                signature=signature,
                pip_requirements=list(pip_requirements),
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_PICKLE,
            )
            self._client.log_artifacts(run_id, str(local), "model")
        return self._register(name, run_id, "model", alias, version_tags)

    def register_artifact_folder(
        self,
        name: str,
        folder: Path,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        alias: str | None = None,
        artifact_path: str = "detector",
    ) -> ModelVersionRef:
        """Log every file of ``folder`` as a run artifact folder and register that folder as a version."""
        if not folder.is_dir() or not any(folder.iterdir()):
            raise RegistryError(f"{folder} is not a folder with files to register as {name!r}")
        run_id = self._start_run(f"{name}-fit", params or {}, metrics or {}, tags or {})
        self._client.log_artifacts(run_id, str(folder), artifact_path)
        return self._register(name, run_id, artifact_path, alias)

    # -- aliases and resolution ----------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: int) -> None:
        self._client.set_registered_model_alias(name, alias, str(version))

    def get_alias(self, name: str, alias: str) -> ModelVersionRef:
        from mlflow.exceptions import MlflowException

        try:
            mv = self._client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            raise RegistryError(
                f"no version of {name!r} has alias {alias!r} in {self.tracking_uri}: "
                "train and register first (`driftloop train --register`)"
            ) from exc
        return ModelVersionRef(name=name, version=int(mv.version), run_id=mv.run_id, source=str(mv.source))

    def get_version(self, name: str, version: int) -> ModelVersionRef:
        from mlflow.exceptions import MlflowException

        try:
            mv = self._client.get_model_version(name, str(version))
        except MlflowException as exc:
            raise RegistryError(f"{name!r} has no version {version} in {self.tracking_uri}") from exc
        return ModelVersionRef(name=name, version=int(mv.version), run_id=mv.run_id, source=str(mv.source))

    def find_version_by_tag(self, name: str, key: str, value: str) -> ModelVersionRef | None:
        """The version of ``name`` whose tag ``key`` equals ``value`` (the newest if several), or None."""
        if "'" in value or "`" in key:
            raise RegistryError(f"cannot search {name!r} for tag {key!r}={value!r}: quotes are not allowed")
        found = self._client.search_model_versions(f"name='{name}' and tags.`{key}` = '{value}'")
        if not found:
            return None
        mv = max(found, key=lambda v: int(v.version))
        return ModelVersionRef(name=name, version=int(mv.version), run_id=mv.run_id, source=str(mv.source))

    def run_data(self, run_id: str) -> tuple[dict[str, str], dict[str, float], dict[str, str]]:
        """(params, metrics, tags) of a run."""
        data = self._client.get_run(run_id).data
        return dict(data.params), {k: float(v) for k, v in data.metrics.items()}, dict(data.tags)

    def resolve(self, uri: str) -> ModelVersionRef:
        """The version a ``models:/name@alias`` or ``models:/name/<n>`` URI points at now."""
        name, alias, version = parse_models_uri(uri)
        if alias is not None:
            return self.get_alias(name, alias)
        assert version is not None
        return self.get_version(name, version)

    def download(self, uri: str, dst: Path) -> Path:
        """Download the artifacts of a ``models:/`` URI into ``dst``; returns the local folder."""
        import mlflow.artifacts

        ref = self.resolve(uri)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=ref.source, dst_path=str(dst), tracking_uri=self.tracking_uri
        )
        return Path(local)

    def load_sklearn_model(self, uri: str) -> Any:
        """Load the sklearn model a ``models:/`` URI points at (reads the pickle in the MLflow folder)."""
        import mlflow.sklearn

        # Downloaded with this registry's tracking URI first: ``load_model(source)`` would resolve a
        # server's ``mlflow-artifacts:/`` source through the process-wide tracking URI instead.
        with tempfile.TemporaryDirectory(prefix="driftloop-model-") as tmp:
            return mlflow.sklearn.load_model(str(self.download(uri, Path(tmp))))

    # -- run artifacts of a version (appended for the drift monitor's references) ----------------------
    def log_run_artifacts(self, run_id: str, folder: Path, artifact_path: str) -> None:
        """Log every file of ``folder`` under ``artifact_path`` of the run ``run_id`` (a finished run too)."""
        self._client.log_artifacts(run_id, str(folder), artifact_path)

    def download_run_artifacts(self, run_id: str, artifact_path: str, dst: Path) -> Path | None:
        """Download ``artifact_path`` of run ``run_id`` into ``dst``; ``None`` when the run has none."""
        import mlflow.artifacts

        listed = self._client.list_artifacts(run_id, artifact_path)
        if not listed:
            return None
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact_path, dst_path=str(dst), tracking_uri=self.tracking_uri
        )
        return Path(local)

    def version_tags(self, name: str, version: int) -> dict[str, str]:
        """The tags of one registered version (``RegistryError`` if it does not exist)."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self._client.get_model_version(name, str(version))
        except MlflowException as exc:
            raise RegistryError(f"{name!r} has no version {version} in {self.tracking_uri}") from exc
        return {str(k): str(v) for k, v in (mv.tags or {}).items()}

    # -- validation results --------------------------------------------------------------------------
    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        """Set (overwrite) tags on one model version."""
        for key, value in tags.items():
            self._client.set_model_version_tag(name, str(version), key, str(value))

    def log_run_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log metrics on an existing run (e.g. a finished candidate's) at ``step``."""
        for key, value in metrics.items():
            self._client.log_metric(run_id, key, float(value), step=step)
