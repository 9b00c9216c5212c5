"""``driftloop demo``: the whole closed loop on this machine (docs/use-case.md).

simulate pump telemetry with a regime change (+6 C on every pump's bearing from day 8: a seal
replacement) -> train and register the initial champion -> ``driftloop loop run --rollout`` on the canary
manifest (runtime, feedback API, joiner, monitor, trainer, validator, rollout controller) -> replay in
accelerated time (V2 calls through the ingress, truth posted late) with a live display -> drift, a
candidate, its verdict, its canary and its promotion -> the report (JSON, PNGs, HTML) and a summary.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, cast

import click

SHIFT_C = 6.0
CHANGE_DAY = 8
PRE_ROWS = 600
POST_CHUNK, POST_CHUNK_S = 100, 0.7
AFTER_PROMOTION_S = 8.0


def simulate_and_train(seed: int) -> dict[str, Any]:
    """Rows before and after the change (each shuffled in time, as the monitor's reference is a sample
    of whole days) and the champion trained on the days before the change."""
    import numpy as np

    from driftloop.learning.features import FeatureSpec, build_features
    from driftloop.learning.training import TrainingSettings, train
    from driftloop.telemetry import SimulatorSettings, simulate_fleet

    settings = SimulatorSettings(
        assets=5, days=12, seed=seed, wear_probability=0, regime_changes_per_asset=0,
        spikes_per_day=0, stuck_per_day=0, dropouts_per_day=0,
    )  # fmt: skip
    telemetry = simulate_fleet(settings).telemetry
    change = settings.start_time + CHANGE_DAY * 86_400.0
    training = train(telemetry[telemetry.event_time < change], FeatureSpec(), TrainingSettings(epochs=5))
    shifted = telemetry.copy()
    shifted.loc[shifted.event_time >= change, "bearing_temp_c"] += SHIFT_C
    rows = build_features(shifted, FeatureSpec())
    rng = np.random.default_rng(seed)
    before = rng.permutation(np.flatnonzero(rows.event_time < settings.start_time + 6 * 86_400.0))
    after = rng.permutation(np.flatnonzero(rows.event_time >= change + 3600))
    return {
        "training": training,
        "change": change,
        "pre": (rows.X[before[:PRE_ROWS]], rows.y[before[:PRE_ROWS]], rows.event_time[before[:PRE_ROWS]]),
        "post": (rows.X[after], rows.y[after], rows.event_time[after]),
        "temp_column": rows.feature_names.index("bearing_temp_c"),
    }


@click.command("demo")
@click.option("--seed", default=3, show_default=True, help="Random seed of the simulation.")
@click.option("--deadline-s", default=240.0, show_default=True, help="Give up after this long.")
@click.option(
    "--checkout",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=Path("."),
    show_default=True,
    help="The driftloop checkout whose manifests/ and models/ the demo runs.",
)
def demo(seed: int, deadline_s: float, checkout: Path) -> None:
    """Run the closed loop: simulate (a +6 C regime change), train and register a champion, run every
    worker (`driftloop loop run --rollout` on manifests/pump-bearing-temp-canary.yaml), replay the
    telemetry through the ingress with truth arriving late, until a candidate is canaried and promoted
    (or rolled back); then write the report to $DRIFTLOOP_HOME/report/ and print a summary. The loop's
    own state is $DRIFTLOOP_HOME/demo (replaced at each run). Kafka when
    DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS is set, else the embedded event log."""
    from rich.console import Console

    from driftloop.cli import demo_loop
    from driftloop.cli.train import quiet_third_party_logs
    from driftloop.settings import StateSettings

    for needed in (demo_loop.CANARY_MANIFEST, demo_loop.MODELS):  # before anything starts
        demo_loop.checkout_path(checkout, needed)
    quiet_third_party_logs()
    console = Console()
    started = time.monotonic()
    home = StateSettings().resolved_home().absolute()
    run_home = home / "demo"
    if run_home.exists():
        shutil.rmtree(run_home)  # the demo's own directory: each run starts from a fresh loop
    run_home.mkdir(parents=True)
    console.print(f"[1/4] simulate 5 pumps x 12 days, +{SHIFT_C:g} C on the bearings from day {CHANGE_DAY}")
    data = simulate_and_train(seed)
    from driftloop.learning.registration import publish
    from driftloop.registry import MlflowRegistry

    state = StateSettings(home=run_home, mlflow_tracking_uri=None)
    registry = MlflowRegistry.from_state(state)
    champion = publish(data["training"], registry).model.version
    console.print(
        f"[2/4] champion v{champion} registered ({registry.tracking_uri}); frozen copy = v{champion}"
    )
    result = _run_loop(console, run_home, data, deadline_s - (time.monotonic() - started), checkout)
    console.print("[4/4] report")
    files = _report(console, run_home, home / "report", registry, champion, data, result)
    run = {k: result[k] for k in ("calls", "failed", "failures", "error")}
    (home / "report" / "demo-run.json").write_text(json.dumps(run, indent=2))
    console.print(f"report: {files.json}\n        {files.html}")
    for image in files.images.values():
        console.print(f"        {image}")
    console.print(
        f"demo done in {time.monotonic() - started:.0f} s: {result['calls']} client calls, "
        f"{result['failed']} failed"
    )
    if result["failed"] or result["error"]:
        raise click.ClickException(result["error"] or f"{result['failed']} client calls failed")


def _run_loop(
    console: Any, run_home: Path, data: dict[str, Any], budget_s: float, checkout: Path
) -> dict[str, Any]:
    import numpy as np

    from driftloop.cli import demo_loop as dl
    from driftloop.cli.loop_session import LoopSession, create_topics, loop_env

    suffix = uuid.uuid4().hex[:8]
    topics = dl.topic_names(suffix)
    create_topics(run_home, topics)
    manifest = dl.write_manifest(run_home / "pump-canary.yaml", topics["request_log"], checkout)
    env = loop_env(run_home, dl.worker_env(topics, suffix))
    console.print(f"[3/4] driftloop loop run --rollout {manifest} (logs in {run_home / 'run' / 'loop'})")
    deadline = time.monotonic() + budget_s
    progress = dl.Progress()
    models = dl.checkout_path(checkout, dl.MODELS)
    session = LoopSession(
        console, run_home, manifest, env, models, ("plant", "pump-bearing-temp"), deadline, progress
    )
    replay = None
    result: dict[str, Any] = {"topics": topics, "error": "", "calls": 0, "failed": 0}
    try:
        with session:
            replay = dl.Replayer(session.ingress, session.api, session.token, progress)
            progress.phase = "replaying the days before the change"
            pre_X, pre_y, pre_t = data["pre"]
            for start in range(0, len(pre_X), 200):
                rows = slice(start, start + 200)
                replay.send(pre_X[rows], pre_y[rows], pre_t[rows])
                session.show()
            progress.phase = f"after the regime change (+{SHIFT_C:g} C)"
            result["change_wall"] = time.time()
            post_X, post_y, post_t = data["post"]
            post, ended_at = 0, None
            while ended_at is None or time.monotonic() < ended_at + AFTER_PROMOTION_S:
                tick = time.monotonic()
                part = np.arange(post, post + POST_CHUNK) % len(post_X)
                replay.send(post_X[part], post_y[part], post_t[part])
                post += POST_CHUNK
                outcomes = session.show()
                if ended_at is None and any(outcomes.get(k) for k in ("promoted", "rolled_back")):
                    ended_at = time.monotonic()
                    progress.phase = "rollout ended; the plant goes on"
                session.check()
                if time.monotonic() > deadline:
                    result["error"] = f"no rollout ended within {budget_s:.0f} s"
                    break
                time.sleep(max(0.0, tick + POST_CHUNK_S - time.monotonic()))
            replay.post_truth()
            time.sleep(3.0)  # the last truth joined and labelled before the loop stops
            progress.phase = "stopping the loop"
            session.show()
    except RuntimeError as exc:
        result["error"] = str(exc)
    finally:
        result["calls"], result["failed"] = progress.calls, progress.failed_calls
        result["failures"] = replay.failures[:5] if replay else []
        if replay is not None:
            replay.close()
    return result


def _report(
    console: Any,
    run_home: Path,
    out_dir: Path,
    registry: Any,
    champion: int,
    data: dict[str, Any],
    result: dict[str, Any],
) -> Any:
    from driftloop_feedback.report import (
        Baseline,
        FeatureColumn,
        MlflowCandidateSource,
        ReportTopics,
        WindowSpec,
        build_report,
        collect,
        print_summary,
        score,
        write_outputs,
    )

    from driftloop.cli.loop_session import open_event_log_at

    topics = result["topics"]
    log = open_event_log_at(run_home)
    try:
        records = collect(
            log,
            topics=ReportTopics(topics["labelled"], topics["drift"], topics["rollouts"]),
            candidates=MlflowCandidateSource(registry.tracking_uri),
            model_name="pump-bearing-temp",
            deployment="plant/pump-bearing-temp",
        )
    finally:
        log.close()
    frozen = registry.load_sklearn_model(f"models:/pump-bearing-temp/{champion}")
    # cast: report.baseline.Baseline declares ``name`` a settable attribute, FeatureColumn a property
    persistence = cast(Baseline, FeatureColumn(data["temp_column"], "bearing temperature now"))
    stream = score(records.examples, frozen, persistence)
    report = build_report(
        records, stream, window=WindowSpec("log_time", 10.0), change_at=data["change"],
        frozen_label=f"v{champion} frozen",
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    files = write_outputs(report, stream, out_dir / "report.json")
    print_summary(report, console)
    return files
