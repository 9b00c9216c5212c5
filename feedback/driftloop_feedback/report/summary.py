"""The loop's report as one typed value, its JSON form and the file it is written to.

JSON fields (``driftloop replay --report``'s contract, issue 15): ``task``, ``rows``; ``loop``,
``frozen``, ``baseline`` (each metric by name: ``mae``/``rmse`` or ``accuracy``/``log_loss``, null when
unknown); ``drift_events``, ``candidates``, ``promotions``, ``rollbacks`` (counts); ``windows`` (the
per-window series). Beside them: how the windows were cut, rows scored per source, before/after the
change, per predictor and model version, and the drift events, candidates and rollout outcomes listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from driftloop_feedback.monitor.verdict import DriftVerdict
from driftloop_feedback.report.metrics import (
    Metrics,
    Window,
    WindowSpec,
    groups,
    metrics_of,
    scored_counts,
    windows,
)
from driftloop_feedback.report.records import CandidateVersion, LoopRecords
from driftloop_feedback.report.scoring import ScoredStream, Task
from driftloop_feedback.rollout.events import RolloutEvent

OUTCOMES = ("promoted", "rolled_back", "aborted")


@dataclass(frozen=True)
class Outcome:
    """How one rollout ended: ``promoted``, ``rolled_back`` or ``aborted``, with the controller's reason."""

    candidate: int | None
    decision: str
    reason: str
    at: float
    weight: int


@dataclass(frozen=True)
class Segment:
    rows: int
    metrics: dict[str, Metrics]


@dataclass(frozen=True)
class VersionMetrics:
    predictor: str
    model_version: str
    rows: int
    metrics: dict[str, Metrics]


@dataclass
class LoopReport:
    task: Task
    rows: int
    overall: dict[str, Metrics]
    scored: dict[str, int]
    baseline_name: str
    window: WindowSpec
    series: list[Window]
    by_version: list[VersionMetrics]
    drift: list[DriftVerdict]
    rollouts: list[RolloutEvent]
    outcomes: list[Outcome]
    candidates: list[CandidateVersion] | None
    duplicates: int
    undecodable: dict[str, int]
    change_at: float | None = None
    before: Segment | None = None
    after: Segment | None = None
    frozen_label: str = "frozen model"
    notes: list[str] = field(default_factory=list)

    @property
    def drift_events(self) -> int:
        return sum(1 for d in self.drift if d.verdict == "drift")

    @property
    def candidate_count(self) -> int:
        if self.candidates is not None:
            return len(self.candidates)
        return len(
            {e.candidate for e in self.rollouts if e.decision == "started" and e.candidate is not None}
        )

    def count(self, decision: str) -> int:
        return sum(1 for o in self.outcomes if o.decision == decision)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "rows": self.rows,
            "loop": self.overall["loop"],
            "frozen": self.overall["frozen"],
            "baseline": self.overall["baseline"],
            "drift_events": self.drift_events,
            "candidates": self.candidate_count,
            "promotions": self.count("promoted"),
            "rollbacks": self.count("rolled_back"),
            "aborted": self.count("aborted"),
            "windows": [_window(w) for w in self.series],
            "window": {"by": self.window.by, "size": self.window.size},
            "scored": self.scored,
            "frozen_model": self.frozen_label,
            "baseline_name": self.baseline_name,
            "change": None
            if self.change_at is None
            else {"at": self.change_at, "before": _segment(self.before), "after": _segment(self.after)},
            "by_version": [
                {"predictor": v.predictor, "model_version": v.model_version, "rows": v.rows, **v.metrics}
                for v in self.by_version
            ],
            "duplicates": self.duplicates,
            "undecodable": self.undecodable,
            "candidates_from": "registry" if self.candidates is not None else "rollouts",
            "drift": [_drift(d) for d in self.drift],
            "candidate_versions": None if self.candidates is None else [c.__dict__ for c in self.candidates],
            "outcomes": [o.__dict__ for o in self.outcomes],
            "notes": self.notes,
        }


def build_report(
    records: LoopRecords,
    stream: ScoredStream,
    *,
    window: WindowSpec | None = None,
    change_at: float | None = None,
    frozen_label: str = "frozen model",
) -> LoopReport:
    """The report of a scored stream and the loop's other records. ``change_at`` (event time, unix
    seconds) splits the metrics into before / after a regime change."""
    window = window or WindowSpec("count", max(1, len(stream) // 40))
    before = after = None
    if change_at is not None:
        early = stream.event_time < change_at
        before = Segment(int(np.count_nonzero(early)), metrics_of(stream, early))
        after = Segment(int(np.count_nonzero(~early)), metrics_of(stream, ~early))
    notes = []
    if (
        stream.task == "classification"
        and stream.p_true["loop"].size
        and np.isnan(stream.p_true["loop"]).any()
    ):
        notes.append(
            "the loop's log loss is unknown: some examples carry no probabilities and their model "
            "versions were not given for re-scoring"
        )
    return LoopReport(
        task=stream.task,
        rows=len(stream),
        overall=metrics_of(stream),
        scored=scored_counts(stream),
        baseline_name=stream.baseline_name,
        window=window,
        series=windows(stream, window),
        by_version=[
            VersionMetrics(e, v, int(np.count_nonzero(m)), metrics_of(stream, m))
            for e, v, m in groups(stream)
        ],
        drift=sorted(records.drift, key=lambda d: d.window_end),
        rollouts=sorted(records.rollouts, key=lambda r: r.at),
        outcomes=outcomes(records.rollouts),
        candidates=records.candidates,
        duplicates=records.duplicates,
        undecodable=dict(records.undecodable),
        change_at=change_at,
        before=before,
        after=after,
        frozen_label=frozen_label,
        notes=notes,
    )


def outcomes(events: list[RolloutEvent]) -> list[Outcome]:
    """One outcome per (candidate, decision), the first recorded (a restarted controller may finish a
    promotion it had announced, writing it again)."""
    seen: set[tuple[int | None, str]] = set()
    out = []
    for e in sorted(events, key=lambda r: r.at):
        if e.decision in OUTCOMES and (e.candidate, e.decision) not in seen:
            seen.add((e.candidate, e.decision))
            out.append(Outcome(e.candidate, e.decision, e.reason, e.at, e.weight))
    return out


def write_report(report: LoopReport, path: str | Path) -> Path:
    """Write the report's JSON (indented, keys in the order above); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    return path


def _window(w: Window) -> dict[str, Any]:
    return {
        "start": w.start,
        "end": w.end,
        "rows": w.rows,
        "model_versions": list(w.model_versions),
        **w.metrics,
    }


def _segment(s: Segment | None) -> dict[str, Any] | None:
    return None if s is None else {"rows": s.rows, **s.metrics}


def min_p_value(d: DriftVerdict) -> float | None:
    values = [p for p in d.p_values.values() if p is not None]
    return min(values) if values else None


def _drift(d: DriftVerdict) -> dict[str, Any]:
    return {
        "window_start": d.window_start,
        "window_end": d.window_end,
        "predictor": d.predictor,
        "model_version": d.model_version,
        "verdict": d.verdict,
        "rows": d.rows,
        "alpha": d.alpha,
        "threshold": d.threshold,
        "min_p_value": min_p_value(d),
        "p_values": d.p_values,
        "reason": d.reason,
    }
