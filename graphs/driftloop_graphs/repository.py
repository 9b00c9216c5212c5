"""How a graph node becomes a model on the predictor's MLServer (one MLServer per predictor).

On a cluster every node is a container (custom MLServer image; the operator injects
``MLSERVER_MODEL_NAME`` = node name and ``MLSERVER_MODEL_URI`` = the node's ``modelUri``) or a
prepackaged server. Locally:

- a node **without** ``implementation`` is the model folder ``<models>/<node-name>/`` (its
  ``model-settings.json``): the node name selects the folder, as it selects the container;
- the node's ``modelUri`` (e.g. ``models:/pump-bearing-temp@champion``, an MLflow registry URI that
  resolves the same on the cluster and on the laptop) overrides ``parameters.uri`` and the
  ``driftloop_servers`` keys ``parameters.extra.model_uri`` / ``detector_uri``;
- ``SKLEARN_SERVER`` / ``MLFLOW_SERVER`` nodes run MLServer's own sklearn / mlflow runtimes on
  ``modelUri``; other prepackaged servers are refused (they need the cluster's images).

The predictor's repository is written under the run directory, one folder per node, each with a
generated ``model-settings.json`` whose relative paths are made absolute against the source folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from driftloop_graphs.errors import UnsupportedLocally
from driftloop_graphs.spec import Node, Predictor

PREPACKAGED = {
    "SKLEARN_SERVER": "mlserver_sklearn.SKLearnModel",
    "MLFLOW_SERVER": "mlserver_mlflow.MLflowRuntime",
}
URI_EXTRA_KEYS = ("model_uri", "detector_uri")


def node_settings(node: Node, models_root: Path) -> dict[str, Any]:
    """The ``model-settings.json`` content for ``node`` (named after the node)."""
    if node.implementation is not None:
        runtime = PREPACKAGED.get(node.implementation)
        if runtime is None:
            raise UnsupportedLocally(
                f"graph node {node.name!r} uses prepackaged server {node.implementation}, which the local "
                f"runtime cannot run (supported: {sorted(PREPACKAGED)}); use a custom MLServer node with "
                f"a folder {models_root}/{node.name}/"
            )
        return {"name": node.name, "implementation": runtime, "parameters": {"uri": node.model_uri}}
    source = models_root / node.name / "model-settings.json"
    if not source.is_file():
        raise UnsupportedLocally(
            f"graph node {node.name!r} has no implementation, so it needs {source} (the local stand-in for "
            f"the container {node.name!r}); create that model folder or point --models at your repository"
        )
    settings: dict[str, Any] = json.loads(source.read_text())
    settings["name"] = node.name
    parameters: dict[str, Any] = settings.setdefault("parameters", {})
    uri = parameters.get("uri")
    if isinstance(uri, str) and "://" not in uri and ":/" not in uri and not os.path.isabs(uri):
        parameters["uri"] = str((source.parent / uri).resolve())
    if node.model_uri:
        parameters["uri"] = node.model_uri
        extra = parameters.setdefault("extra", {})
        for key in URI_EXTRA_KEYS:
            if key in extra:
                extra[key] = node.model_uri
    return settings


def write_settings(folder: Path, settings: dict[str, Any]) -> None:
    """Write ``model-settings.json`` atomically (a reload never reads half a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".model-settings.json.tmp"
    tmp.write_text(json.dumps(settings, indent=2))
    os.replace(tmp, folder / "model-settings.json")


def build_repository(predictor: Predictor, models_root: Path, target: Path) -> Path:
    """Write the MLServer repository serving every node of ``predictor`` into ``target``."""
    for node in predictor.nodes():
        write_settings(target / node.name, node_settings(node, models_root))
    return target


def set_model_uri(repository: Path, node: Node, model_uri: str) -> dict[str, Any]:
    """Point ``node``'s generated settings at ``model_uri`` (before a repository reload)."""
    path = repository / node.name / "model-settings.json"
    settings: dict[str, Any] = json.loads(path.read_text())
    parameters = settings.setdefault("parameters", {})
    parameters["uri"] = model_uri
    extra = parameters.setdefault("extra", {})
    for key in URI_EXTRA_KEYS:
        if key in extra:
            extra[key] = model_uri
    write_settings(path.parent, settings)
    return settings


def restore_settings(repository: Path, node: str, text: str) -> None:
    """Put back ``node``'s ``model-settings.json`` as it was (``text``), atomically."""
    folder = repository / node
    tmp = folder / ".model-settings.json.tmp"
    tmp.write_text(text)
    os.replace(tmp, folder / "model-settings.json")
