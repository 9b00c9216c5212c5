"""NAB benchmark: ``python -m bench nab``.

``machine_temperature_system_failure`` (``shared/data/nab``, 22,695 rows at 5 min, 4 labelled failure
windows): the value ``HORIZON`` rows ahead is forecast through the offline replay (``driftloop replay
--offline``'s code: ``initial_model``/``evaluate``, the label known ``HORIZON`` rows later, the last
``LAGS`` known values as inputs, the replay's default model), beside the persistence baseline on the
same rows. On the same rows' inputs, the product's own detectors:

- **outlier rows**: the detector the outlier runtime serves, fitted as ``driftloop.learning.training.train``
  fits it (``TrainingSettings`` defaults: kind, threshold quantile, reference rows, reference trim) on the
  training part's inputs; every scored row's inputs are scored on their own; a flagged row is a flag (the
  old count: no alarm rule);
- **outlier** (the product's alarm): those per-row flags go, with each row, into the drift monitor's
  ``WindowBook`` with the ``MonitorSettings`` outlier-rate test (``monitor/alarms.py``: one-sided binomial
  test of a window's flagged count against the base rate, at ``outlier_alarm_alpha`` per window); an alarm
  flags the row at which the monitor raises it;
- **drift**: the drift monitor's own library code, called directly (no processes): ``WindowBook``
  windows (``MonitorSettings`` defaults: 500 rows) judged by ``judge`` with a ``VersionDetectors`` fitted
  on the training part's inputs (the model version's reference); a ``drift`` verdict flags the row at
  which its window closes (when the monitor emits it).

Flags become alarms: a flag less than ``REFRACTORY`` rows (1 day) after the start of the current alarm
belongs to it, the next flag starts a new alarm. A labelled window is detected when an
alarm starts inside it (NAB's windows already include lead time); an alarm starting outside every window
is a false alarm; false alarms per week = count / weeks of scored data outside the windows.

Rows are used in file order, as NAB's scorer does: the time steps back once (data row 10,149, 02:55 ->
02:00); nothing is sorted or dropped, the label delay is in rows, and a row's window membership is
decided by its own timestamp.

**Through the live loop** (the second part, after the library part; ``DRIFTLOOP_BENCH_NAB=library`` or
``live`` runs one part only): ``driftloop replay`` in live mode, as a process (local runtime, feedback
API, joiner, drift monitor, trainer, validator, rollout controller on the embedded log), on a CSV derived
in a temporary folder, because the replay's ``--target`` is a column, not "a column h rows ahead":
``timestamp`` (text: left out of the features), ``value`` (the reading at the row, the one feature: the
replay needs one) and ``value_ahead`` (the value ``HORIZON`` rows later: the target), ``--label-delay
HORIZON --label-lags LAGS``, the same training part; no ``--time`` (the time steps back once, which the
replay refuses; rows keep file order and the delay is in rows). The loop runs with the live replay's own
settings (``driftloop.cli.replay_graph.worker_settings``, printed). The link from the loop's events to
rows: each drift event's ``window_end`` (the log time of its window's last row) and the report's
``live.call_timeline`` (per call: first row, end row, sent at, answered at): the window's last row is the
last row of the last call sent at or before that time; a ``drift`` verdict flags that row, as the
library part does, and is counted by the same ``tally``. The replay's graph has an outlier node before
the model (``replay_graph``: its detector fitted on the training part's inputs with the trainer's
defaults), so the request log carries each row's ``outlier_flag`` and the monitor raises its outlier-rate
alarm live: each alarm on ``driftloop.alarms`` (read from the run's event log after the replay) flags the
row of the call that decided it (its ``at_ms``, mapped through the same timeline), counted by the same
``tally``. The monitor runs with the replay's settings (200-row windows, not the library part's 500).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from driftloop_feedback.monitor.alarms import OUTLIER_RATE, Alarm, OutlierRateTest
from driftloop_feedback.monitor.pairing import ModelCall
from driftloop_feedback.monitor.recent import RecentRows
from driftloop_feedback.monitor.references import VersionDetectors
from driftloop_feedback.monitor.settings import ALARM_TOPIC, MonitorSettings
from driftloop_feedback.monitor.verdict import DriftVerdict, TestSpec, judge_and_keep
from driftloop_feedback.monitor.windows import WindowBook

from bench.replay_process import live_replay_report
from driftloop.cli.replay_graph import worker_settings
from driftloop.learning.training import TrainingSettings, fit_detectors
from driftloop.references import DriftReference
from driftloop.replay.delay import LabelDelay
from driftloop.replay.models import DEFAULT_MODEL
from driftloop.replay.prequential import Evaluation, ReplayPlan, evaluate, initial_model
from driftloop.replay.table import ReplayTable

NAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"
FILE = "realKnownCause/machine_temperature_system_failure.csv"
HORIZON = 12  # rows: 1 h ahead at 5 min
LAGS = 12  # the last hour of known values as inputs
TRAIN_DAYS = 7.0  # the training part: the first 7 days (the first window opens after 7.4 days)
REFRACTORY = 288  # rows (1 day at 5 min): an alarm's flags
WEEK_S = 7 * 86400.0
GOAL_DETECTED, GOAL_FA_PER_WEEK = 3, 1.0
PART_ENV = "DRIFTLOOP_BENCH_NAB"  # library | live | both (default)
RATE_ENV = "DRIFTLOOP_BENCH_NAB_LIVE_RATE"  # rows/s: the live replay's --max-rate (default: unpaced)
# the live replay's loop settings printed with the results (the rollout's and validator's clocks too)
WATCHED_SETTINGS = (
    "DRIFTLOOP_MONITOR_",
    "DRIFTLOOP_TRAINER_POLICY",
    "DRIFTLOOP_ROLLOUT_STEP_WEIGHTS",
    "DRIFTLOOP_ROLLOUT_INTERVAL_S",
    "DRIFTLOOP_ROLLOUT_THRESHOLD",
    "DRIFTLOOP_ROLLOUT_MIN_REQUESTS",
)
KEEP_ENV = "DRIFTLOOP_BENCH_NAB_LIVE_KEEP"  # a folder: keep the live replay's report and output there


@dataclass(frozen=True)
class Settings:
    """The knobs of one run; the defaults are the product's (``TrainingSettings``, ``MonitorSettings``)."""

    outlier_kind: str = TrainingSettings().outlier_kind
    outlier_quantile: float = TrainingSettings().outlier_threshold_quantile
    outlier_trim: float = TrainingSettings().outlier_reference_trim
    reference_rows: int = TrainingSettings().reference_rows
    drift_alpha: float = MonitorSettings().alpha
    drift_serial: Literal["independent", "ar1"] = MonitorSettings().serial
    drift_reference: Literal["version", "recent"] = MonitorSettings().reference
    recent_rows: int = MonitorSettings().recent_rows
    window_rows: int = MonitorSettings().window_rows
    outlier_alarm_alpha: float = MonitorSettings().outlier_alarm_alpha
    outlier_base_rate: float = MonitorSettings().outlier_base_rate
    horizon: int = HORIZON
    lags: int = LAGS
    model: str = DEFAULT_MODEL
    seed: int = 0


@dataclass(frozen=True)
class Tally:
    """One component's alarms against the labelled windows."""

    alarms: list[int]  # row index of each alarm's start
    detected: list[int]  # 1-based numbers of the windows an alarm started in
    false_alarms: int
    weeks_outside: float

    @property
    def per_week(self) -> float:
        return self.false_alarms / self.weeks_outside if self.weeks_outside > 0 else float("nan")


@dataclass(frozen=True)
class Outcome:
    start: int  # first scored row (the rows before it are the training part)
    scored: int
    evaluation: Evaluation
    flags: dict[str, np.ndarray]  # component -> bool per scored row
    tallies: dict[str, Tally]
    drift_windows: int
    drift_verdicts: int  # windows whose verdict was drift


def load_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The values and their times (unix seconds), in file order."""
    frame = pd.read_csv(path)
    times = pd.to_datetime(frame["timestamp"]).to_numpy("datetime64[s]").astype(np.int64).astype(float)
    return frame["value"].to_numpy(np.float64), times


def load_windows(path: Path, key: str) -> list[tuple[float, float]]:
    raw = json.loads(path.read_text())[key]
    return [(pd.Timestamp(a).timestamp(), pd.Timestamp(b).timestamp()) for a, b in raw]


def group_alarms(flags: np.ndarray, refractory: int) -> list[int]:
    """Row indices where alarms start: a flag less than ``refractory`` rows after the start of the
    current alarm belongs to it; the first flag after that starts a new alarm (so a detector that flags
    every row raises one alarm per refractory period, not one endless alarm)."""
    starts: list[int] = []
    for row in np.flatnonzero(flags).tolist():
        if not starts or row - starts[-1] >= refractory:
            starts.append(int(row))
    return starts


def tally(
    flags: np.ndarray, times: np.ndarray, windows: Sequence[tuple[float, float]], refractory: int
) -> Tally:
    """Count ``flags`` (bool per row, ``times`` its row times) as alarms against ``windows``."""
    inside = np.zeros(len(times), dtype=bool)
    for a, b in windows:
        inside |= (times >= a) & (times <= b)
    alarms = group_alarms(flags, refractory)
    detected = sorted({w + 1 for r in alarms for w, (a, b) in enumerate(windows) if a <= times[r] <= b})
    false_alarms = sum(1 for r in alarms if not inside[r])
    step = float(np.median(np.abs(np.diff(times)))) if len(times) > 1 else 0.0
    return Tally(alarms, detected, false_alarms, float((~inside).sum()) * step / WEEK_S)


def forecast_table(values: np.ndarray, horizon: int) -> ReplayTable:
    """Row i forecasts ``values[i + horizon]``; its only inputs are the labels already known (lags)."""
    n = len(values) - horizon
    return ReplayTable(
        X=np.empty((n, 0)),
        y=values[horizon:].copy(),
        features=[],
        target=f"value+{horizon}",
        task="regression",
        task_reason="h-step forecast of a numeric series",
        time=None,
        asset=None,
        classes=None,
    )


def outlier_flags(Z: np.ndarray, start: int, s: Settings) -> np.ndarray:
    """Fit as ``training.train`` does (its ``fit_detectors``: reference subsample, trim, refit), then
    score every scored row on its own."""
    training = TrainingSettings(
        outlier_kind=s.outlier_kind,
        outlier_threshold_quantile=s.outlier_quantile,
        outlier_reference_trim=s.outlier_trim,
        reference_rows=s.reference_rows,
        seed=s.seed,
    )
    detector, _, _ = fit_detectors(Z[s.lags : start], training)
    # one row per call, as the replay sends them: a served detector scores each request on its own
    return np.asarray([bool(detector.score(Z[i : i + 1]).flags[0]) for i in range(start, len(Z))])


class _Reference:
    """The model version's drift reference (a ``ReferenceSource``), here held in memory."""

    def __init__(self, reference: DriftReference) -> None:
        self._reference = reference

    def reference(self, version: str) -> DriftReference:
        return self._reference

    def fallback(self, version: str) -> tuple[object, tuple[str, ...] | None, str]:
        raise LookupError("no fallback in the benchmark")


def monitor_flags(
    Z: np.ndarray, start: int, names: list[str], s: Settings, outlier_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The monitor's windows, verdicts and outlier-rate alarms over the scored rows' inputs and their
    outlier flags, one row per call. Event times advance 1 ms a row (a replay logs rows faster than
    ``window_s``), so windows close on row count. Returns drift flags (the row a drift verdict's window
    closes on), outlier-alarm flags (the row the monitor raises the alarm on), windows judged and drift
    verdicts."""
    monitor = MonitorSettings(
        alpha=s.drift_alpha,
        serial=s.drift_serial,
        reference=s.drift_reference,
        recent_rows=s.recent_rows,
        window_rows=s.window_rows,
        outlier_alarm_alpha=s.outlier_alarm_alpha,
        outlier_base_rate=s.outlier_base_rate,
    )
    ref = Z[s.lags : start]
    if len(ref) > s.reference_rows:
        ref = ref[np.sort(np.random.default_rng(s.seed).choice(len(ref), s.reference_rows, replace=False))]
    detectors = VersionDetectors(
        _Reference(DriftReference(ref, tuple(names))),
        kind=monitor.detector_kind,
        options=monitor.detector_options(),
        clock=lambda: 0.0,
    )
    spec = TestSpec(
        monitor.detector_kind,
        monitor.correction,
        monitor.alpha,
        monitor.min_rows,
        monitor.outlier_test(),
        monitor.serial,
    )
    recent = RecentRows(monitor.recent_rows) if monitor.reference == "recent" else None
    book = WindowBook(
        window_rows=monitor.window_rows, window_s=monitor.window_s, outlier_test=monitor.outlier_test()
    )
    drift = np.zeros(len(Z) - start, dtype=bool)
    alarms = np.zeros(len(Z) - start, dtype=bool)
    judged = drifted = 0
    for i in range(start, len(Z)):
        call = ModelCall(
            f"r{i}", "nab", "1", Z[i : i + 1], outlier_rows[i - start : i - start + 1], event_ms=i
        )
        for window in book.add(call, now=0.0):
            judged += 1
            if judge_and_keep(window, detectors, spec, recent).is_drift:
                drift[i - start] = True
                drifted += 1
        if book.take_alarms():
            alarms[i - start] = True
    return drift, alarms, judged, drifted


def outlier_alarm_flags(outlier_rows: np.ndarray, test: OutlierRateTest) -> np.ndarray:
    """Only the monitor's outlier-rate alarm (no drift test): the rows it raises alarms on."""
    book = WindowBook(window_rows=test.window_rows, window_s=1e12, outlier_test=test)
    alarms = np.zeros(len(outlier_rows), dtype=bool)
    x = np.zeros((1, 1))
    for i in range(len(outlier_rows)):
        book.add(ModelCall(f"r{i}", "nab", "1", x, outlier_rows[i : i + 1], event_ms=i), now=0.0)
        if book.take_alarms():
            alarms[i] = True
    return alarms


def run(
    values: np.ndarray,
    times: np.ndarray,
    windows: Sequence[tuple[float, float]],
    start: int,
    s: Settings | None = None,
) -> Outcome:
    """The bench's core: forecast, flag and count on one series; rows before ``start`` train."""
    s = s or Settings()
    table = forecast_table(values, s.horizon)
    plan = ReplayPlan(
        LabelDelay(rows=s.horizon),
        model=s.model,
        train_fraction=(start + 0.25) / len(table),
        label_lags=s.lags,
        seed=s.seed,
    )
    init = initial_model(table, plan)
    evaluation = evaluate(table, plan)
    row_flags = outlier_flags(init.Z, init.start, s)
    dr_flags, alarm_flags, judged, drifted = monitor_flags(init.Z, init.start, init.inputs, s, row_flags)
    series = replace(s, drift_serial="ar1", drift_reference="recent")
    ts_flags = monitor_flags(init.Z, init.start, init.inputs, series, row_flags)[0]
    scored_times = times[init.start : len(table)]
    flags = {
        "outlier": alarm_flags,
        "drift": dr_flags,
        "either": alarm_flags | dr_flags,
        "outlier_rows": row_flags,
        "either_rows": row_flags | dr_flags,
        "drift_ts": ts_flags,
        "either_ts": alarm_flags | ts_flags,
    }
    tallies = {k: tally(f, scored_times, windows, REFRACTORY) for k, f in flags.items()}
    return Outcome(init.start, len(table) - init.start, evaluation, flags, tallies, judged, drifted)


def _print(outcome: Outcome, times: np.ndarray, label: str) -> None:
    print(f"  {label}")
    print(
        f"    {'component':12s} {'detected':>10s} {'which':>10s} {'false alarms':>13s} {'FA/week':>8s}  goal"
    )
    for name, t in outcome.tallies.items():
        _row(name, t)


def _row(name: str, t: Tally) -> None:
    met = len(t.detected) >= GOAL_DETECTED and t.per_week <= GOAL_FA_PER_WEEK
    which = ",".join(str(w) for w in t.detected) or "-"
    print(
        f"    {name:12s} {len(t.detected):>8d}/4 {which:>10s} {t.false_alarms:>13d} {t.per_week:>8.2f}  "
        f"{'met' if met else 'NOT met'}"
    )


def write_forecast_csv(values: np.ndarray, stamps: Sequence[str], horizon: int, path: Path) -> Path:
    """The replay's input for an h-step forecast: row i holds its own reading ``value`` and the target
    ``value_ahead`` = the reading ``horizon`` rows later (the last ``horizon`` rows have none)."""
    n = len(values) - horizon
    frame = pd.DataFrame(
        {"timestamp": list(stamps[:n]), "value": values[:n], "value_ahead": values[horizon:]}
    )
    frame.to_csv(path, index=False)
    return path


def rows_at_log_times(timeline: Sequence[Sequence[float]], log_times: Sequence[float]) -> np.ndarray:
    """The data row each log time (unix seconds) falls on: the last row of the last call sent at or
    before it (the ingress logs a call between its request and its answer); a time before the first call
    is that call's first row. ``timeline`` holds the live report's ``[first row, end row, sent at,
    answered at]`` per answered call, in sending order."""
    if not timeline:
        return np.zeros(len(log_times), dtype=np.int64)
    first = np.asarray([c[0] for c in timeline], dtype=np.int64)
    end = np.asarray([c[1] for c in timeline], dtype=np.int64)
    sent = np.asarray([c[2] for c in timeline], dtype=float)
    at = np.searchsorted(sent, np.asarray(log_times, dtype=float), side="right") - 1
    return np.where(at < 0, first[0], end[np.maximum(at, 0)] - 1)


def alarm_rows(alarms: Sequence[Alarm], timeline: Sequence[Sequence[float]]) -> tuple[np.ndarray, int]:
    """The data row of each outlier-rate alarm: the row of the call whose log time (``at_ms``) decided
    it (``rows_at_log_times``). Alarms of other kinds, or from before the run's first call (an earlier
    run's, on a shared topic), are left out; returns (rows, alarms left out)."""
    first = timeline[0][2] if timeline else float("inf")
    kept = [a for a in alarms if a.kind == OUTLIER_RATE and a.at_ms / 1000.0 >= first]
    return rows_at_log_times(timeline, [a.at_ms / 1000.0 for a in kept]), len(alarms) - len(kept)


def live_flags(
    report: dict[str, Any], start: int, n: int, alarms: Sequence[Alarm] = ()
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Per scored row (``start``..``n - 1``): ``drift`` where a window with a drift verdict ends, and
    ``outlier`` where the monitor raised an outlier-rate alarm (``alarms``, from ``driftloop.alarms``;
    ``alarm_rows``); and the drift verdicts counted by model version."""
    live = report["live"]
    assert isinstance(live, dict)
    verdicts = live["drift_verdicts"]
    ends = rows_at_log_times(live["call_timeline"], [v["window_end"] for v in verdicts])
    flags = {"outlier": np.zeros(n - start, dtype=bool), "drift": np.zeros(n - start, dtype=bool)}
    by_version: dict[str, int] = {}
    for v, row in zip(verdicts, ends.tolist(), strict=True):
        if v["verdict"] == "drift":
            flags["drift"][row - start] = True
            by_version[str(v["model_version"])] = by_version.get(str(v["model_version"]), 0) + 1
    rows, _ = alarm_rows(alarms, live["call_timeline"])
    flags["outlier"][rows - start] = True
    flags["either"] = flags["outlier"] | flags["drift"]
    return flags, by_version


def read_loop_events(run_home: Path) -> tuple[list[Alarm], list[DriftVerdict]]:
    """The run's alarms (``driftloop.alarms``) and drift events (the run's drift topic, named after the
    request-log topic of its manifest), read to their end from its event log."""
    from driftloop_feedback.report.collect import read_to_end

    from driftloop.cli.demo_loop import topic_names
    from driftloop.cli.loop_session import open_event_log_at

    manifest = yaml.safe_load((run_home / "replay-canary.yaml").read_text())
    env = manifest["spec"]["predictors"][0]["svcOrchSpec"]["env"]
    request_log = next(e["value"] for e in env if e["name"] == "LOGGER_KAFKA_TOPIC")
    drift_topic = topic_names(request_log.rsplit(".", 1)[1])["drift"]
    log = open_event_log_at(run_home)
    try:
        alarms = [Alarm.from_json(r.value) for r in read_to_end(log, ALARM_TOPIC)]
        verdicts = [DriftVerdict.from_json(r.value) for r in read_to_end(log, drift_topic)]
    finally:
        log.close()
    return alarms, verdicts


def run_live(
    csv: Path, start: int, rows: int, s: Settings, folder: Path, max_rate: float | None = None
) -> dict[str, Any]:
    """``driftloop replay`` in live mode on ``csv`` (a process; its own ``DRIFTLOOP_HOME``); the report."""
    fraction = (start + 0.25) / rows  # the replay's training part is round(rows * fraction) = start
    args = ["--target", "value_ahead", "--label-delay", str(s.horizon), "--label-lags", str(s.lags)]
    args += ["--model", s.model, "--train-fraction", repr(fraction)]
    if max_rate:
        args += ["--max-rate", f"{max_rate:g}"]
    return live_replay_report(csv, args, folder)


def _side_by_side(library: dict[str, Tally] | None, live: dict[str, Tally | None]) -> None:
    """One row per component; ``None`` (no library part, no flags to test live, or a setting the live
    loop does not run): '-'. The live loop's drift test runs with the replay's time-series settings
    (``replay_graph.REPLAY_MONITOR``), so its drift and either sit beside the library's ``_ts`` rows."""
    print(
        f"    {'component':30s} {'library: detected, FA, FA/week':>34s}   "
        f"{'live loop: detected, FA, FA/week':>34s}"
    )
    rows = [
        ("outlier (outlier-rate alarm)", "outlier", "outlier"),
        ("drift, product defaults", "drift", None),
        ("either, product defaults", "either", None),
        ("drift, time-series settings", "drift_ts", "drift"),
        ("either, time-series settings", "either_ts", "either"),
    ]
    for label, in_library, in_live in rows:
        cells = []
        for t in (library.get(in_library) if library else None, live[in_live] if in_live else None):
            if t is None:
                cells.append(f"{'-':>34s}")
                continue
            met = len(t.detected) >= GOAL_DETECTED and t.per_week <= GOAL_FA_PER_WEEK
            which = ",".join(str(w) for w in t.detected) or "-"
            verdict = "met" if met else "NOT met"
            cell = f"{len(t.detected)}/4 ({which}), {t.false_alarms}, {t.per_week:.2f} {verdict}"
            cells.append(f"{cell:>34s}")
        print(f"    {label:30s} {cells[0]}   {cells[1]}")


def main_live(
    values: np.ndarray,
    times: np.ndarray,
    windows: Sequence[tuple[float, float]],
    start: int,
    s: Settings,
    library: dict[str, Tally] | None,
) -> None:
    settings = worker_settings(
        {
            k: k
            for k in (
                "request_log",
                "keyed_log",
                "feedback",
                "telemetry",
                "predictions",
                "labelled",
                "drift",
                "rollouts",
            )
        },
        "x",
        1.0,
    )
    shown = {k: v for k, v in settings.items() if k.startswith(WATCHED_SETTINGS)}
    shown = {k: v for k, v in shown.items() if not k.endswith(("_TOPIC", "_GROUP_ID", "MODEL_NAME"))}
    print(
        "  through the live loop: driftloop replay (live) as a process on a derived CSV (timestamp, value, "
        f"value_ahead = value {s.horizon} rows later), --label-delay {s.horizon} --label-lags {s.lags} "
        f"--model {s.model}, the same training part; no --time (the time steps back once)"
    )
    print(f"  the live replay's loop settings (replay_graph.worker_settings): {shown}")
    rate = float(os.environ[RATE_ENV]) if os.environ.get(RATE_ENV) else None
    pace = (
        f"--max-rate {rate:g} rows/s"
        if rate
        else "unpaced (the replay's default: as fast as the loop answers)"
    )
    print(f"  pace: {pace} ({RATE_ENV}); one day of data is 288 rows")
    stamps = pd.read_csv(NAB / FILE)["timestamp"].astype(str).tolist()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nab-live-") as tmp:
        folder = Path(tmp)
        csv = write_forecast_csv(values, stamps, s.horizon, folder / "nab_h.csv")
        report = run_live(csv, start, len(values) - s.horizon, s, folder, rate)
        alarms, events = read_loop_events(Path(report["live"]["run_home"]))
        if os.environ.get(KEEP_ENV):
            keep = Path(os.environ[KEEP_ENV])
            keep.mkdir(parents=True, exist_ok=True)
            for name in ("live.json", "replay.out"):
                (keep / name).write_bytes((folder / name).read_bytes())
    seconds = time.monotonic() - began
    n = len(values) - s.horizon
    flags, by_version = live_flags(report, start, n, alarms)
    scored_times = times[start:n]
    tallies = {k: tally(f, scored_times, windows, REFRACTORY) for k, f in flags.items()}
    live = report["live"]
    assert isinstance(live, dict)
    verdicts = live["drift_verdicts"]
    print(
        f"  live run: {seconds:.0f} s in all ({live['replay_seconds']:.0f} s from the first request to the "
        f"last truth; {report['rows_per_second']:.0f} rows/s); {report['rows']} rows scored, "
        f"{live['calls']} calls ({live['failed_calls']} failed), {live['labelled_examples']} labelled "
        f"examples; MAE served {report['loop']['mae']:.3f}, frozen v1 {report['frozen']['mae']:.3f}, "
        f"persistence {report['baseline']['mae']:.3f}"
    )
    print(
        f"  the loop: {len(verdicts)} monitor windows, {report['drift_events']} drift verdicts "
        f"(by served version: {by_version}), {report['candidates']} candidates, {report['promotions']} "
        f"promotions, {report['rollbacks']} rollbacks; rows served by version {live['served_versions']}"
    )
    print("  " + outlier_summary(alarms, events, live["call_timeline"]))
    # no window carried outlier flags (a graph without the outlier node): nothing was tested
    flagged = any(v.flagged_rows for v in events)
    shown_live: dict[str, Tally | None] = {**tallies, "outlier": tallies["outlier"] if flagged else None}
    _side_by_side(library, shown_live)


def outlier_summary(
    alarms: Sequence[Alarm], events: Sequence[DriftVerdict], timeline: Sequence[Sequence[float]]
) -> str:
    """The live outlier node's flags as the monitor counted them, and its alarms on the alarm topic."""
    rows = sum(v.flagged_rows or 0 for v in events)
    flagged = sum(v.outliers or 0 for v in events)
    share = f"{flagged / rows:.2%}" if rows else "-"
    _, left_out = alarm_rows(alarms, timeline)
    critical = sorted({(a.critical_count, a.tested_rows) for a in alarms})
    return (
        f"outlier node (live): {flagged} of {rows} rows in the monitor's windows flagged ({share}; base "
        f"rate {MonitorSettings().outlier_base_rate}); {len(alarms) - left_out} outlier-rate alarms on "
        f"{ALARM_TOPIC} (critical count / rows: {critical or '-'}; {left_out} from before the run left out)"
    )


def main() -> None:
    part = os.environ.get(PART_ENV, "both")
    if part not in ("library", "live", "both"):
        raise SystemExit(f"{PART_ENV}={part!r}: pass library, live or both")
    values, times = load_series(NAB / FILE)
    windows = load_windows(NAB / "labels" / "combined_windows.json", FILE)
    back = int(np.flatnonzero(np.diff(times) < 0)[0]) + 1  # the row whose time steps back
    start = int(np.searchsorted(times[:back], times[0] + TRAIN_DAYS * 86400.0))
    s = Settings()
    print(
        f"NAB {FILE}: {len(values)} rows, in file order (the time steps back at data row {back} "
        f"(0-based): "
        f"{pd.Timestamp(times[back - 1], unit='s')} -> {pd.Timestamp(times[back], unit='s')}; kept as NAB's "
        "scorer does)"
    )
    print(
        f"  forecast: value {s.horizon} rows (1 h) ahead, label known {s.horizon} rows later, inputs the "
        f"last {s.lags} known values, model {s.model!r} (offline replay's initial_model/evaluate)"
    )
    print(
        f"  training part: the first {TRAIN_DAYS:g} days (rows 0..{start - 1}, up to "
        f"{pd.Timestamp(times[start - 1], unit='s')}; first window opens "
        f"{pd.Timestamp(windows[0][0], unit='s')}); detectors fitted on its inputs"
    )
    print(
        "  components called as library functions, no processes: outlier rows = fit_outlier_detector as "
        "training.train fits it, each flagged row a flag (no alarm rule); outlier = the monitor's "
        "outlier-rate alarm on those flags (WindowBook + OutlierRateTest); drift = the monitor's WindowBook "
        "+ judge + VersionDetectors"
    )
    print(
        f"  alarms: a flag < {REFRACTORY} rows (1 day) after the start of the current alarm belongs to it, "
        "the next one starts a new alarm; a drift verdict flags the row its window closes on (one drift "
        "event per window, as the monitor emits); an outlier-rate alarm flags the row the monitor raises "
        "it on"
    )
    print(
        "  a window is detected when an alarm starts inside it; a false alarm starts outside every window; "
        "FA/week = false alarms / weeks of scored data outside the windows"
    )
    if part == "live":
        main_live(values, times, windows, start, s, None)
        return
    outcome = run(values, times, windows, start, s)
    m = outcome.evaluation.metrics()
    print(
        f"  scored rows {outcome.scored}; MAE loop {m['loop']['mae']:.3f}, frozen {m['frozen']['mae']:.3f}, "
        f"persistence {m['baseline']['mae']:.3f} (RMSE {m['loop']['rmse']:.3f} / {m['frozen']['rmse']:.3f} / "
        f"{m['baseline']['rmse']:.3f})"
    )
    weeks = next(iter(outcome.tallies.values())).weeks_outside
    print(
        f"  weeks of scored data outside the windows: {weeks:.2f}; "
        f"drift windows judged: {outcome.drift_windows}"
    )
    print(
        f"  drift verdicts: {outcome.drift_verdicts} of {outcome.drift_windows} windows (a k-of-m rule over "
        "windows cannot thin alarms when nearly every window drifts)"
    )
    monitor = MonitorSettings()
    _print(
        outcome,
        times,
        f"product defaults: outlier {s.outlier_kind} q={s.outlier_quantile} trim={s.outlier_trim}; "
        f"outlier-rate alarm binomial base rate {s.outlier_base_rate} alpha {s.outlier_alarm_alpha} per "
        f"window (critical {monitor.outlier_test().full_window_critical} of {s.window_rows} rows); "
        f"drift {monitor.detector_kind} alpha={s.drift_alpha} {s.window_rows}-row windows; drift_ts / "
        f"either_ts: the drift test with the settings for a time series (serial=ar1, reference=recent, "
        f"recent_rows={s.recent_rows}; chosen after looking at these windows, see docs/benchmarks.md)",
    )
    print(
        "  sensitivity of the outlier-rate alarm (same per-row flags, only the alarm's settings move; "
        "measured on THESE windows, so not a tuning result):"
    )
    print(f"    {'alpha':>8s} {'base rate':>10s} {'rows':>5s} {'critical':>8s}")
    scored_times = times[outcome.start : outcome.start + outcome.scored]
    for alpha in (0.01, 0.001, 1e-4, 1e-6):
        for base in (0.02, 0.025, 0.03):
            for rows in (250, 500, 1000):
                test = OutlierRateTest(base, alpha, rows)
                t = tally(
                    outlier_alarm_flags(outcome.flags["outlier_rows"], test),
                    scored_times,
                    windows,
                    REFRACTORY,
                )
                print(f"    {alpha:>8g} {base:>10g} {rows:>5d} {test.full_window_critical:>8d}", end="")
                _row("", t)
    if part == "both":
        main_live(values, times, windows, start, s, outcome.tallies)


if __name__ == "__main__":
    main()
