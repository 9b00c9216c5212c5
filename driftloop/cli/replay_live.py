"""The live replay: the initial model trained on the leading rows and registered as champion, then the
rest of the rows through the whole loop as in production (``driftloop.cli.loop_session``, the demo's
loop): V2 requests through the local runtime's Seldon ingress, each request's ground truth posted to the
feedback API by its ``Seldon-Puid`` once its label is revealed (``--label-delay``), and the joiner,
drift monitor, trainer, validator and rollout controller doing what they do.

The loop's predictions are what the ingress answered (whichever version served the request); the frozen
copy of the initial model and the baseline are scored on the same rows as offline. A classifier is
served and learned on class indices (the feedback API takes numbers as ground truth) and reported
with the data's class labels.
"""

from __future__ import annotations

import copy
import shutil
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from driftloop.cli.replay_graph import (
    DEPLOYMENT,
    MODEL_NAME,
    NAMESPACE,
    NODE,
    worker_settings,
    write_serving,
)
from driftloop.replay.prequential import InitialModel, ReplayPlan, initial_model, score_sources
from driftloop.replay.report import ReplayRun
from driftloop.replay.table import ReplayTable

REFERENCE_ROWS = 5000  # the drift monitor's reference: a sample of the training part's inputs
SHOW_EVERY_S = 0.5
# each of the monitor's windows in the report: its log-time bounds map it to rows via call_timeline
VERDICT_FIELDS = (
    "window_id",
    "model_version",
    "window_start",
    "window_end",
    "rows",
    "verdict",
    "outlier_alarm",
)


@dataclass(frozen=True)
class LiveOptions:
    run_home: Path
    rows_per_call: int = 10
    start_timeout_s: float = 240.0
    settle_s: float = 30.0  # after the last request: wait this long at most for the trainer to catch up
    max_rate: float | None = None  # rows per second at most (None: as fast as the loop answers)
    # the served model also learns each revealed label in place (the ingress's learn route) before the
    # next request: River's test-then-train, Seldon Core v1's send_feedback for online models
    online: bool = False


@dataclass
class Served:
    """What the ingress answered, per scored row (NaN / None where the call failed)."""

    prediction: np.ndarray
    proba: np.ndarray | None
    versions: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    truth_posted: int = 0
    learned: int = 0  # rows the served model learned in place (online), as its MLServers answered
    learn_failed: int = 0
    seconds: float = 0.0  # from the first request to the last truth posted
    # per answered call: [first row, end row (exclusive), sent at, answered at] (rows of the data, unix
    # seconds): links the monitor's events (log times) back to rows
    timeline: list[list[float]] = field(default_factory=list)


def replay_live(
    source: str,
    table: ReplayTable,
    plan: ReplayPlan,
    options: LiveOptions,
    console: Any,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> ReplayRun:
    from driftloop.cli import demo_loop as dl
    from driftloop.cli.loop_session import LoopSession, create_topics, loop_env, open_event_log_at

    started = clock()
    y_model = _class_indices(table) if table.classes is not None else None
    init = initial_model(table, plan, y=y_model)
    frozen = copy.deepcopy(init.model)
    run_home = options.run_home.absolute()
    if run_home.exists():
        shutil.rmtree(run_home)  # the replay's own directory: each run starts from a fresh loop
    run_home.mkdir(parents=True)
    registry = _register(run_home, table, init)
    console.print(f"initial model registered: {MODEL_NAME} v1 @champion ({init.known} labels); frozen = v1")
    from driftloop.cli.replay_graph import fit_and_publish_detectors  # the outlier node's detector

    fit_and_publish_detectors(registry, init.Z[: init.start], [*table.features, *init.inputs])
    suffix = uuid.uuid4().hex[:8]
    topics = dl.topic_names(suffix)
    create_topics(run_home, topics)
    names = [*table.features, *init.inputs]
    manifest, models = write_serving(run_home, topics["request_log"], names, online=options.online)
    bound = None if table.classes is not None else _loss_bound(table.y[: init.known])
    env = loop_env(run_home, worker_settings(topics, suffix, bound))
    console.print(f"driftloop loop run --rollout {manifest} (logs in {run_home / 'run' / 'loop'})")
    progress = dl.Progress(title="driftloop replay")
    deadline = clock() + options.start_timeout_s
    session = LoopSession(
        console, run_home, manifest, env, models, (NAMESPACE, DEPLOYMENT), deadline, progress
    )
    with session:
        served = _send(session, table, init, y_model, options, progress, clock, wall)
        progress.phase = "the loop catches up with the last labels"
        _settle(session, served.truth_posted, options.settle_s, clock)
        progress.phase = "stopping the loop"
        session.show()
    loop = _loop_counts(run_home, topics, registry.tracking_uri, open_event_log_at)
    labels = None if table.classes is None else list(table.classes)
    evaluation = score_sources(
        table, init, frozen, served.prediction, served.proba, labels, loop["labelled_examples"]
    )
    loop.update(
        calls=served.calls,
        failed_calls=served.failed,
        failures=served.failures[:5],
        truth_rows_posted=served.truth_posted,
        served_versions=dict(served.versions),
        rows_per_call=options.rows_per_call,
        online=options.online,
        online_learned_rows=served.learned,
        online_learn_failed_calls=served.learn_failed,
        replay_seconds=served.seconds,
        run_home=str(run_home),
        call_timeline=served.timeline,
    )
    return ReplayRun(
        source, table, plan, evaluation, clock() - started, live=loop, live_seconds=served.seconds
    )


def _class_indices(table: ReplayTable) -> np.ndarray:
    assert table.classes is not None
    index = {c: i for i, c in enumerate(table.classes)}
    return np.asarray([index[c] for c in table.y.tolist()], dtype=np.int64)


def _loss_bound(y: np.ndarray) -> float:
    """A regressor's validation losses are clipped to the training targets' range (1 when flat)."""
    spread = float(np.ptp(y.astype(float)))
    return spread if spread > 0 else 1.0


def _register(run_home: Path, table: ReplayTable, init: InitialModel) -> Any:
    from driftloop.learning.registration import model_pip_requirements
    from driftloop.references import log_reference
    from driftloop.registry import MlflowRegistry
    from driftloop.settings import StateSettings

    registry = MlflowRegistry.from_state(StateSettings(home=run_home, mlflow_tracking_uri=None))
    names = [*table.features, *init.inputs]
    reference = init.Z[: init.start]
    if len(reference) > REFERENCE_ROWS:
        pick = np.random.default_rng(0).choice(len(reference), REFERENCE_ROWS, replace=False)
        reference = reference[np.sort(pick)]
    ref = registry.register_sklearn_model(
        MODEL_NAME,
        init.model,
        input_example=init.Z[:5],
        pip_requirements=model_pip_requirements(),
        params={"task": table.task, "training_labels": init.known, "target": table.target},
        tags={"driftloop.kind": "replay", "driftloop.feature_names": ",".join(names)},
    )
    if ref.run_id is not None:  # the drift monitor tests the served traffic against this reference
        log_reference(registry, ref.run_id, np.asarray(reference, dtype=float), names)
    registry.set_alias(MODEL_NAME, "champion", ref.version)
    return registry


def _send(
    session: Any,
    table: ReplayTable,
    init: InitialModel,
    y_model: np.ndarray | None,
    options: LiveOptions,
    progress: Any,
    clock: Callable[[], float],
    wall: Callable[[], float] = time.time,
) -> Served:
    """The scored rows in calls of ``rows_per_call``; after each call, the truth of every earlier
    request whose rows' labels are all revealed by then is posted (one POST per call)."""
    from driftloop.learning.v2_payload import features_request

    n, start, classes = len(table), init.start, table.classes
    rows = n - start
    served = Served(
        prediction=np.full(rows, np.nan) if classes is None else np.full(rows, None, dtype=object),
        proba=None if classes is None else np.full((rows, len(classes)), np.nan),
    )
    truth = table.y.astype(float) if y_model is None else y_model.astype(float)
    pending: deque[tuple[str, int, int]] = deque()
    client = httpx.Client(timeout=60.0)
    began = last_show = clock()
    try:
        for a in range(start, n, options.rows_per_call):
            b = min(n, a + options.rows_per_call)
            times = None if table.time is None else table.time[a:b].tolist()
            body = features_request(init.Z[a:b], event_times=times)
            sent_at = wall()
            r = client.post(f"{session.ingress}/v2/models/infer", json=body)
            served.calls += 1
            progress.calls = served.calls
            if 200 <= r.status_code < 300:
                _read(r.json(), served, a - start, b - start, classes)
                served.timeline.append([a, b, sent_at, wall()])
                pending.append((r.headers["Seldon-Puid"], a, b))
                progress.rows_sent += b - a
            else:
                served.failed += 1
                progress.failed_calls = served.failed
                served.failures.append(f"{r.status_code}: {r.text[:200]}")
            records, spans = [], []
            while pending and init.reveal[pending[0][2] - 1] <= min(b, n - 1):  # reveal n: never
                puid, lo, hi = pending.popleft()
                records.append({"request_id": puid, "truth": truth[lo:hi].tolist()})
                spans.append((lo, hi))
            if records:
                served.truth_posted += _post_truth(client, session, records)
                progress.truth_posted = served.truth_posted
                if options.online:
                    _learn(
                        client, session, init.Z, truth, spans, classifier=classes is not None, served=served
                    )
            if options.max_rate:
                time.sleep(max(0.0, began + (b - start) / options.max_rate - clock()))
            if clock() - last_show >= SHOW_EVERY_S:
                progress.phase = f"replaying rows {start + 1}..{n} (at {b})"
                session.show()
                session.check()
                last_show = clock()
    finally:
        served.seconds = clock() - began
        client.close()
    return served


def _read(body: dict[str, Any], served: Served, lo: int, hi: int, classes: list[object] | None) -> None:
    outputs = {o["name"]: o for o in body["outputs"]}
    served.versions[str(body.get("model_version", "?"))] += hi - lo
    if classes is None or served.proba is None:
        served.prediction[lo:hi] = np.asarray(outputs["prediction"]["data"], dtype=float)
        return
    order = [int(c) for c in body["parameters"]["classes"]]  # served class indices, column order
    proba = np.asarray(outputs["probabilities"]["data"], dtype=float).reshape(hi - lo, len(order))
    full = np.zeros((hi - lo, len(classes)))
    full[:, order] = proba
    served.proba[lo:hi] = full
    served.prediction[lo:hi] = np.asarray(classes, dtype=object)[np.argmax(full, axis=1)]


def _post_truth(client: httpx.Client, session: Any, records: list[dict[str, Any]]) -> int:
    r = client.post(f"{session.api}/v1/feedback", json={"records": records}, headers=session.auth)
    if r.status_code != 200:
        raise RuntimeError(f"the feedback API refused the ground truth: {r.status_code} {r.text[:300]}")
    return int(r.json()["accepted"])


def _learn(
    client: httpx.Client,
    session: Any,
    Z: np.ndarray,
    truth: np.ndarray,
    spans: list[tuple[int, int]],
    *,
    classifier: bool,
    served: Served,
) -> None:
    """The served model learns the revealed rows in place: one call to the ingress's learn route, which
    every predictor's model node answers (``docs/local-runtime.md``). A refusal is counted and kept."""
    from driftloop.learning.v2_payload import features_request

    rows = np.concatenate([np.arange(lo, hi) for lo, hi in spans])
    body = features_request(Z[rows])
    values = truth[rows]
    body["inputs"].append(
        {"name": "truth", "datatype": "INT64" if classifier else "FP64", "shape": [len(rows)],
         "data": values.astype(np.int64 if classifier else float).tolist()}
    )  # fmt: skip
    r = client.post(f"{session.ingress}/v2/models/{NODE}/learn", json=body)
    if r.status_code == 200:
        served.learned += len(rows)
        return
    served.learn_failed += 1
    served.failures.append(f"learn {r.status_code}: {r.text[:200]}")


def _settle(session: Any, posted: int, settle_s: float, clock: Callable[[], float]) -> None:
    """Wait (at most ``settle_s``) until the trainer has read every posted label."""
    until = clock() + settle_s
    while clock() < until:
        session.show()
        session.check()
        if session.scrape("trainer").get("driftloop_trainer_examples_consumed_total", 0.0) >= posted:
            return
        time.sleep(0.5)


def _loop_counts(run_home: Path, topics: dict[str, str], tracking_uri: str, open_log: Any) -> dict[str, Any]:
    """What the loop did, from its topics and the registry (the feedback report's reader)."""
    from driftloop_feedback.report import MlflowCandidateSource, ReportTopics, collect
    from driftloop_feedback.report.summary import outcomes

    log = open_log(run_home)
    try:
        records = collect(
            log,
            topics=ReportTopics(topics["labelled"], topics["drift"], topics["rollouts"]),
            candidates=MlflowCandidateSource(tracking_uri),
            model_name=MODEL_NAME,
            deployment=f"{NAMESPACE}/{DEPLOYMENT}",
        )
    finally:
        log.close()
    ended = outcomes(records.rollouts)
    candidates = records.candidates or []
    return {
        "drift_events": sum(1 for d in records.drift if d.verdict == "drift"),
        "drift_windows": len(records.drift),
        "drift_verdicts": [{k: getattr(d, k) for k in VERDICT_FIELDS} for d in records.drift],
        "candidates": len(candidates),
        "promotions": sum(1 for o in ended if o.decision == "promoted"),
        "rollbacks": sum(1 for o in ended if o.decision == "rolled_back"),
        "labelled_examples": len(records.examples),
        "candidate_versions": [
            {"version": c.version, "trigger": c.trigger, "validation": c.validation, "rollout": c.rollout}
            for c in candidates
        ],
        "outcomes": [{"candidate": o.candidate, "decision": o.decision, "reason": o.reason} for o in ended],
    }
