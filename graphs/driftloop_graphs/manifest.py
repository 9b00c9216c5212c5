"""Reading SeldonDeployment manifests: the YAML a user would ``kubectl apply``.

A file may hold several YAML documents (``---``). Documents of other kinds (a Namespace, a Secret,
a ConfigMap next to the deployment) are skipped, as ``driftloop`` only runs SeldonDeployments; a
document that is not a mapping or has no ``kind`` is rejected, naming the document's position.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from driftloop_graphs.errors import ManifestError

API_GROUP = "machinelearning.seldon.io"
KIND = "SeldonDeployment"
# The CRD serves v1 (storage), v1alpha2 and v1alpha3 with the same Seldon fields.
SERVED_VERSIONS = ("v1", "v1alpha2", "v1alpha3")


def is_seldon_deployment(doc: dict[str, Any]) -> bool:
    api_version = str(doc.get("apiVersion", ""))
    return doc.get("kind") == KIND and api_version.startswith(f"{API_GROUP}/")


def load_manifests(path: Path) -> list[dict[str, Any]]:
    """Every SeldonDeployment document in ``path`` (multi-document YAML), in file order.

    Raises :class:`ManifestError` when the file cannot be read or parsed, when a document is not a
    Kubernetes object, or when the file holds no SeldonDeployment at all.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror or exc}") from exc
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path} is not valid YAML: {exc}") from exc
    deployments: list[dict[str, Any]] = []
    for index, doc in enumerate(documents):
        if doc is None:
            continue  # an empty document, e.g. a trailing '---'
        if not isinstance(doc, dict) or "kind" not in doc:
            raise ManifestError(
                f"{path}: document {index + 1} is not a Kubernetes object (a mapping with "
                f"'apiVersion' and 'kind'); got {type(doc).__name__}"
            )
        if is_seldon_deployment(doc):
            deployments.append(doc)
    if not deployments:
        raise ManifestError(
            f"{path} holds no SeldonDeployment (kind: {KIND}, apiVersion: {API_GROUP}/v1); "
            "driftloop runs and validates SeldonDeployments only"
        )
    return deployments


def deployment_name(doc: dict[str, Any]) -> str:
    metadata = doc.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("name"), str):
        return metadata["name"]
    return "<unnamed>"
