"""The SeldonDeployment CRD as Seldon Core v1 installs it on a cluster.

``crds/seldondeployment-crd.yaml`` is controller-gen's output (``operator/config/crd/bases``). It types
``graph.children`` as ``items: {}``, which a real API server refuses for ``apiextensions.k8s.io/v1``
("must not be empty for specified array items"): the schema is not structural. Seldon's release build
therefore replaces each version's ``graph`` schema with the node schema nested ``GRAPH_LEVELS`` deep
(``operator/hack/create_graph_openapi_schema.py``, default 10 levels), the innermost node having no
``children`` at all. That is the CRD the Helm chart installs, and what :func:`installed_seldon_crd`
rebuilds from the vendored base. Consequences on a cluster: every node in the first 11 levels is
schema-checked (``name`` required, field types), and children below that are pruned on write.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CRD_DIR = Path(__file__).parent / "crds"
SELDON_CRD_BASE = CRD_DIR / "seldondeployment-crd.yaml"
SELDON_CRD_NAME = "seldondeployments.machinelearning.seldon.io"
GRAPH_LEVELS = 10

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRD is 2.4 MB: the C loader takes 0.1 s


def load_crd_file(path: Path) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.load(path.read_text(), Loader=_Loader)
    return crd


def base_seldon_crd() -> dict[str, Any]:
    """controller-gen's CRD, unchanged (not installable as it is: see the module docstring)."""
    return load_crd_file(SELDON_CRD_BASE)


def installed_seldon_crd(levels: int = GRAPH_LEVELS) -> dict[str, Any]:
    """The base CRD with every version's ``graph`` typed ``levels`` children deep, as Seldon ships it."""
    crd = base_seldon_crd()
    for version in crd["spec"]["versions"]:
        predictor = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["predictors"]
        graph = predictor["items"]["properties"]["graph"]
        predictor["items"]["properties"]["graph"] = _nest(graph, levels)
    return crd


def _nest(node: dict[str, Any], levels: int) -> dict[str, Any]:
    nested = copy.deepcopy(node)
    if levels == 0:
        nested["properties"].pop("children", None)
    else:
        nested["properties"]["children"] = {"type": "array", "items": _nest(node, levels - 1)}
    return nested
