"""The operations gate's figures on a cluster: Seldon Core v1's executor histogram, read from a Prometheus
server's HTTP API (as Flagger and Argo Rollouts read theirs).

Seldon's executor (the service orchestrator in each predictor's pod) observes every request it serves in
``seldon_api_executor_server_requests_seconds{deployment_name, predictor_name, predictor_version,
service, method, code}`` (a histogram). One instant query (``/api/v1/query``) of its ``_bucket`` series
for the SeldonDeployment's inference requests (``service`` ``predictions`` over REST, the V2 ``ModelInfer``
method over gRPC) gives, per predictor, everything ``ops.compare`` needs:

- requests: the ``le="+Inf"`` buckets, over every code;
- errors: the same for the codes that are the server's fault: HTTP 5xx, or the gRPC codes that map to
  5xx (``Unknown``, ``Internal``, ``Unimplemented``, ``Unavailable``, ``DeadlineExceeded``, ``DataLoss``);
  HTTP 4xx and other gRPC codes are the client's input, as for the local ingress;
- latency: the buckets over every code.

Reading ``_bucket`` alone keeps the three consistent (one evaluation time). The executor exports no
outlier counts; the driftloop outlier runtime does (``driftloop_servers.metrics``):
``driftloop_outlier_scored_rows_total`` and ``driftloop_outlier_flagged_rows_total{model,
deployment_name, predictor_name}`` on each outlier node's MLServer metrics endpoint. The same instant
query reads both families too (``<buckets> or {__name__=~"<both>", deployment_name=...}`` with the same
extra matchers: one evaluation for all the figures), so each predictor's scored and flagged rows are there
and ``compare``'s outlier-rate test works on a cluster as on the local ingress. No such series (no
outlier node, or Prometheus does not scrape the MLServer containers): no rows, no outlier verdict.

**Counter resets.** The query returns each pod's series. A pod that restarts (or is replaced) starts its
counters at 0, which a plain sum would read as traffic going backwards. The source therefore keeps, per
series, the last value it saw and adds each series' increase to running totals (a value below the last one
is a reset: all of it is new), as Prometheus's ``increase()`` does within a range. The snapshots it returns
are those totals: cumulative and never decreasing, so ``compare`` works on their differences unchanged.
A series first seen after the first snapshot (a new pod, a first 5xx) counts in full.

Prometheus unreachable, a query refused (bad selector, timeout) or an answer that is not a vector raise
``BackendError`` with what went wrong: the controller then has no ops verdict for that interval (counted
and logged; no data is never a failure).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import httpx

from driftloop_feedback.rollout.errors import BackendError, RolloutConfigError
from driftloop_feedback.rollout.ops import IngressSnapshot, PredictorCounts

EXECUTOR_HISTOGRAM = "seldon_api_executor_server_requests_seconds"
# The executor's ``service`` label of inference requests: REST (``/v2/models/<m>/infer``, and the Seldon
# protocol's ``/api/v1.0/predictions``) and the V2 gRPC method.
INFERENCE_SERVICES = ("predictions", "/inference.GRPCInferenceService/ModelInfer")
# The outlier runtime's row counters (driftloop_servers.metrics) -> the PredictorCounts field they fill.
OUTLIER_ROW_FAMILIES = {
    "driftloop_outlier_scored_rows_total": "scored",
    "driftloop_outlier_flagged_rows_total": "flagged",
}
# gRPC status codes that a gRPC-HTTP gateway maps to 5xx: the server's fault.
GRPC_SERVER_ERRORS = frozenset(
    {"Unknown", "Internal", "Unimplemented", "Unavailable", "DeadlineExceeded", "DataLoss"}
)
# One or more PromQL label matchers, comma-separated: name, operator, double-quoted value.
_MATCHER = r'[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"'
SELECTOR_RE = re.compile(rf"^\s*{_MATCHER}(\s*,\s*{_MATCHER})*\s*,?\s*$")

SeriesKey = tuple[tuple[str, str], ...]


def is_server_error(code: str) -> bool:
    """True for an HTTP status >= 500 or a gRPC code the server is to blame for."""
    if code.isdigit():
        return int(code) >= 500
    return code in GRPC_SERVER_ERRORS


def promql_string(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def bucket_query(deployment: str, extra_selector: str = "") -> str:
    """The instant query of the deployment's inference buckets, one series per pod, code and ``le``."""
    services = "|".join(re.escape(s) for s in INFERENCE_SERVICES)
    matchers = [f"deployment_name={promql_string(deployment)}", f"service=~{promql_string(services)}"]
    return f"{EXECUTOR_HISTOGRAM}_bucket{_selector(matchers, extra_selector)}"


def outlier_rows_query(deployment: str, extra_selector: str = "") -> str:
    """The instant query of the outlier nodes' scored/flagged row counters of the deployment, one series
    per pod, node and family."""
    names = "|".join(re.escape(n) for n in OUTLIER_ROW_FAMILIES)
    matchers = [f"__name__=~{promql_string(names)}", f"deployment_name={promql_string(deployment)}"]
    return _selector(matchers, extra_selector)


def _selector(matchers: list[str], extra_selector: str) -> str:
    """``{m1, m2, ...}`` with the user's extra label matchers (if any) after the query's own."""
    extra = extra_selector.strip().rstrip(",").strip()
    return "{" + ", ".join([*matchers, extra] if extra else matchers) + "}"


def ops_query(deployment: str, extra_selector: str = "") -> str:
    """The one instant query of a reading: the executor's buckets or (PromQL's union) the outlier rows."""
    return f"{bucket_query(deployment, extra_selector)} or {outlier_rows_query(deployment, extra_selector)}"


def _series_key(labels: Mapping[str, str]) -> SeriesKey:
    return tuple(sorted(labels.items()))


def _node_key(labels: Mapping[str, str]) -> SeriesKey:
    """A series' labels but its name: the same for both row counters of one node in one process."""
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


def _count(labels: Mapping[str, str], value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise BackendError(f"series {dict(labels)} has value {value}: not a count")
    return value


def parse_vector(body: object, query: str) -> list[tuple[dict[str, str], float]]:
    """The ``(labels, value)`` samples of a ``/api/v1/query`` answer (``BackendError`` if it is not a
    successful vector)."""
    if not isinstance(body, Mapping):
        raise BackendError(f"Prometheus answered {type(body).__name__}, not a JSON object, to {query}")
    if body.get("status") != "success":
        raise BackendError(
            f"Prometheus refused the query {query}: {body.get('errorType', '?')}: {body.get('error', body)}"
        )
    data = body.get("data")
    if not isinstance(data, Mapping) or data.get("resultType") != "vector":
        got = data.get("resultType") if isinstance(data, Mapping) else data
        raise BackendError(f"Prometheus answered {got!r}, not an instant vector, to {query}")
    samples = []
    for item in data.get("result") or []:
        try:
            labels = {str(k): str(v) for k, v in item["metric"].items()}
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise BackendError(f"Prometheus sample {item!r} is not a labelled value ({exc!r})") from exc
        samples.append((labels, value))
    return samples


class PrometheusOpsSource:
    """The deployment's per-predictor counts from Seldon's executor histogram and the outlier runtime's
    row counters in Prometheus (``OpsSource``). ``extra_selector`` adds label matchers to both selectors,
    e.g. ``namespace="plant"`` (the label a Prometheus Operator PodMonitor gives each pod's series)."""

    def __init__(
        self,
        url: str,
        deployment: str,
        *,
        extra_selector: str = "",
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if extra_selector.strip() and not SELECTOR_RE.match(extra_selector):
            raise RolloutConfigError(
                f"Prometheus selector {extra_selector!r} is not comma-separated label matchers "
                '(e.g. namespace="plant"): fix DRIFTLOOP_ROLLOUT_PROMETHEUS_SELECTOR'
            )
        self.url = url.rstrip("/")
        self.deployment = deployment
        self.query = ops_query(deployment, extra_selector)
        self._client = httpx.Client(base_url=self.url, timeout=timeout_s, transport=transport)
        self._last: dict[SeriesKey, float] = {}  # each series' last value
        self._totals: dict[tuple[str, str, float], float] = {}  # (predictor, code, le) -> increase so far
        self._rows: dict[tuple[str, str], float] = {}  # (predictor, "scored"/"flagged") -> increase so far

    def snapshot(self) -> IngressSnapshot:
        rows: list[tuple[str, dict[str, str], float]] = []
        for labels, value in self._query():
            kind = OUTLIER_ROW_FAMILIES.get(labels.get("__name__", ""))
            if kind is not None:
                rows.append((kind, labels, value))
                continue
            predictor, code, le_text = (labels.get(k) for k in ("predictor_name", "code", "le"))
            if predictor is None or code is None or le_text is None:
                continue  # not an executor bucket series: nothing of the gate's
            try:
                le = float(le_text)  # "+Inf" -> inf
            except ValueError as exc:
                raise BackendError(f"executor bucket with le={le_text!r}: not a bound") from exc
            slot = (predictor, code, le)
            self._totals[slot] = self._totals.get(slot, 0.0) + self._increase(labels, value)
        self._count_rows(rows)
        return self._counts()

    def _count_rows(self, rows: list[tuple[str, dict[str, str], float]]) -> None:
        """Adds each outlier node's scored/flagged increase to its predictor's totals. A node's two
        counters start together: when one is below its last value the node restarted, and both count in
        full (the flagged counter may have grown past its old value already)."""
        restarted = set()
        for _, labels, value in rows:
            last = self._last.get(_series_key(labels))
            if last is not None and _count(labels, value) < last:
                restarted.add(_node_key(labels))
        for kind, labels, value in rows:
            reset = _node_key(labels) in restarted
            increase = self._increase(labels, value, reset=reset)
            predictor = labels.get("predictor_name")
            if predictor:  # a node outside a Seldon predictor (no PREDICTOR_ID) is no predictor's
                self._rows[(predictor, kind)] = self._rows.get((predictor, kind), 0.0) + increase

    def _increase(self, labels: Mapping[str, str], value: float, *, reset: bool = False) -> float:
        """The series' increase since its last reading (all of it when new or after a reset)."""
        key = _series_key(labels)
        last = self._last.get(key)
        self._last[key] = _count(labels, value)
        return value if reset or last is None or value < last else value - last

    def _counts(self) -> dict[str, PredictorCounts]:
        requests: dict[str, float] = {}
        errors: dict[str, float] = {}
        buckets: dict[str, dict[float, float]] = {}
        for (predictor, code, le), n in self._totals.items():
            per_le = buckets.setdefault(predictor, {})
            per_le[le] = per_le.get(le, 0.0) + n
            if math.isinf(le):
                requests[predictor] = requests.get(predictor, 0.0) + n
                if is_server_error(code):
                    errors[predictor] = errors.get(predictor, 0.0) + n
        predictors = set(buckets) | {p for p, _ in self._rows}
        return {
            p: PredictorCounts(
                requests.get(p, 0.0),
                errors.get(p, 0.0),
                buckets.get(p, {}),
                self._rows.get((p, "scored"), 0.0),
                self._rows.get((p, "flagged"), 0.0),
            )
            for p in predictors
        }

    def _query(self) -> list[tuple[dict[str, str], float]]:
        try:
            response = self._client.post("/api/v1/query", data={"query": self.query})
        except httpx.HTTPError as exc:
            raise BackendError(f"Prometheus at {self.url} unreachable ({exc!r})") from exc
        try:
            body = response.json()
        except ValueError:
            raise BackendError(
                f"POST {self.url}/api/v1/query -> {response.status_code}, not JSON: not a Prometheus "
                f"server? ({response.text[:200]!r})"
            ) from None
        if response.status_code != 200 and not (isinstance(body, Mapping) and "error" in body):
            raise BackendError(f"POST {self.url}/api/v1/query -> {response.status_code}: {body!r:.200}")
        return parse_vector(body, self.query)

    def close(self) -> None:
        self._client.close()
