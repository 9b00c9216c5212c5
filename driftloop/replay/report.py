"""The replay's report: issue 15's field names (``task``, ``rows``, ``loop``, ``frozen``, ``baseline``,
``drift_events``, ``candidates``, ``promotions``, ``rollbacks``, ``windows``), one shape for both modes.
Offline no drift monitor, trainer, validator or rollout controller runs, so their counts are ``null``
(not 0: nothing was watched) and ``notes`` says so; live they are read from the loop's topics and
registry, and ``live`` holds the run's own figures (calls, truth posted, versions served, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from driftloop.replay.prequential import SOURCES, Evaluation, ReplayPlan
from driftloop.replay.table import ReplayTable

BASELINE_NAMES = {"regression": "persistence (last known target)", "classification": "last known label"}
OFFLINE_NOTE = (
    "offline replay: the model learned every revealed label (test-then-train); no drift monitor, "
    "trainer, validator or rollout controller ran, so drift_events, candidates, promotions and "
    "rollbacks are null"
)

LIVE_NOTE = (
    "live replay: requests through the local runtime's Seldon ingress, ground truth posted to the "
    "feedback API once revealed; 'loop' scores what the ingress answered (whichever version served), "
    "'frozen' the initial model re-scored; rows_per_second is the rows sent over the time from the "
    "first request to the last truth posted, the whole loop running"
)
ONLINE_NOTE = (
    "online: the served model also learned each revealed label in place (the ingress's learn route) "
    "before the next request; a promotion replaces it with the promoted candidate, which then learns on"
)


@dataclass(frozen=True)
class ReplayRun:
    source: str
    table: ReplayTable
    plan: ReplayPlan
    evaluation: Evaluation
    seconds: float
    live: dict[str, Any] | None = None  # what the loop did (live mode): counts, calls, versions served
    live_seconds: float | None = None  # from the first request to the last truth posted


def window_size(rows: int) -> int:
    return max(1, rows // 40)


def build_report(run: ReplayRun, window: int | None = None) -> dict[str, Any]:
    table, plan, ev = run.table, run.plan, run.evaluation
    size = window or window_size(len(ev))
    overall = ev.metrics()
    windows = []
    for lo in range(0, len(ev), size):
        hi = min(len(ev), lo + size)
        entry: dict[str, Any] = {"start_row": ev.start + lo + 1, "end_row": ev.start + hi, "rows": hi - lo}
        if table.time is not None:
            entry["start_time"] = float(table.time[ev.start + lo])
            entry["end_time"] = float(table.time[ev.start + hi - 1])
        entry.update(ev.metrics(lo, hi))
        windows.append(entry)
    live = run.live
    counts = {
        k: None if live is None else live[k]
        for k in ("drift_events", "candidates", "promotions", "rollbacks")
    }
    from_truth = [f"the last {plan.label_lags} known label(s) of the row's asset"] if plan.label_lags else []
    return {
        "mode": "offline" if live is None else "live",
        "task": table.task,
        "task_reason": table.task_reason,
        "rows": len(ev),
        "loop": overall["loop"],
        "frozen": overall["frozen"],
        "baseline": overall["baseline"],
        "baseline_name": BASELINE_NAMES[table.task],
        "scored": {s: int(ev.scored(s).sum()) for s in SOURCES},
        **counts,
        "windows": windows,
        "window": {"by": "count", "size": size},
        "source": run.source,
        "target": table.target,
        "classes": table.classes,
        "model": plan.model,
        "inputs": {
            "features": table.features,
            "from_ground_truth": from_truth,
            "label_lags": plan.label_lags,
            "columns": ev.inputs,
        },
        "label_delay": plan.delay.to_dict(),
        "rows_total": len(table),
        "training_rows": ev.start,
        "trained_on_labels": ev.trained_on,
        "learned_labels": ev.learned,
        "dropped": table.dropped,
        "forward_filled_values": table.forward_filled,
        "ignored_columns": table.ignored_columns,
        "seconds": run.seconds,
        "rows_per_second": _rate(len(ev), run.seconds if run.live_seconds is None else run.live_seconds),
        "notes": [OFFLINE_NOTE]
        if live is None
        else [LIVE_NOTE, *([ONLINE_NOTE] if live.get("online") else [])],
        **({} if live is None else {"live": live}),
    }


def _rate(rows: int, seconds: float) -> float | None:
    return rows / seconds if seconds > 0 else None


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    return path
