"""The offline replay's report: issue 15's field names (``task``, ``rows``, ``loop``, ``frozen``,
``baseline``, ``drift_events``, ``candidates``, ``promotions``, ``rollbacks``, ``windows``), the same
shape as the live loop's report. Offline no drift monitor, trainer, validator or rollout controller
runs, so their counts are ``null`` (not 0: nothing was watched) and ``notes`` says so."""

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


@dataclass(frozen=True)
class ReplayRun:
    source: str
    table: ReplayTable
    plan: ReplayPlan
    evaluation: Evaluation
    seconds: float


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
    from_truth = [f"the last {plan.label_lags} known label(s) of the row's asset"] if plan.label_lags else []
    return {
        "mode": "offline",
        "task": table.task,
        "task_reason": table.task_reason,
        "rows": len(ev),
        "loop": overall["loop"],
        "frozen": overall["frozen"],
        "baseline": overall["baseline"],
        "baseline_name": BASELINE_NAMES[table.task],
        "scored": {s: int(ev.scored(s).sum()) for s in SOURCES},
        "drift_events": None,
        "candidates": None,
        "promotions": None,
        "rollbacks": None,
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
        "rows_per_second": len(ev) / run.seconds if run.seconds > 0 else None,
        "notes": [OFFLINE_NOTE],
    }


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    return path
