"""driftloop's Kubernetes adapter: connections, a SeldonDeployment client and a local test API server."""

from driftloop.kube.connection import KubeConnection
from driftloop.kube.errors import KubeAPIError, KubeError
from driftloop.kube.sdep_client import SeldonDeploymentClient, WatchEvent

__all__ = ["KubeAPIError", "KubeConnection", "KubeError", "SeldonDeploymentClient", "WatchEvent"]
