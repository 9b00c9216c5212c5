"""The report's figures, drawn with matplotlib's Agg backend (no display needed), saved as PNG.

- ``error``: error over time: the loop per predictor and model version, the frozen model and the
  baseline, per report window (MAE for regression, error rate = 1 - accuracy for classification), with
  the regime change, promotions and rollbacks marked;
- ``drift``: each drift-monitor window's smallest per-feature p-value over time (log scale), the
  alpha / threshold line, windows judged ``drift`` highlighted;
- ``traffic``: the canary's and main predictor's traffic weights over time from the rollout decisions.

Drift and traffic are on the log's clock (seconds since the first record); the error figure is on the
report window's axis (event time, log time or example count); markers from the log's clock are placed on
it through the examples' own times.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from driftloop_feedback.report.metrics import Metrics, windows
from driftloop_feedback.report.metrics import groups as version_groups
from driftloop_feedback.report.scoring import ScoredStream
from driftloop_feedback.report.summary import LoopReport, min_p_value

COLORS = {"frozen": "#555555", "baseline": "#999999", "promoted": "#2ca02c", "rolled_back": "#d62728"}
_UNITS = ((86_400.0, "days"), (3_600.0, "hours"), (60.0, "minutes"), (1.0, "seconds"))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def time_unit(span_s: float) -> tuple[float, str]:
    """The unit a span of seconds reads best in: (seconds per unit, name)."""
    for size, name in _UNITS:
        if span_s >= 3 * size:
            return size, name
    return 1.0, "seconds"


def error_value(metrics: Metrics, task: str) -> float:
    if task == "regression":
        value = metrics["mae"]
        return np.nan if value is None else value
    accuracy = metrics["accuracy"]
    return np.nan if accuracy is None else 1.0 - accuracy


@dataclass(frozen=True)
class Axis:
    """Positions on the error figure's x axis."""

    stream: ScoredStream
    report: LoopReport
    origin: float
    unit: float
    label: str

    @classmethod
    def of(cls, report: LoopReport, stream: ScoredStream) -> Axis:
        spec = report.window
        if spec.by == "count":
            return cls(stream, report, 0.0, 1.0, "labelled examples (event-time order)")
        t = spec.axis(stream)
        unit, name = time_unit(float(t.max() - t.min()))
        what = "event time" if spec.by == "event_time" else "time the example was joined"
        return cls(stream, report, float(t.min()), unit, f"{what}, {name} since the first example")

    def place(self, raw: npt.NDArray[np.float64] | float) -> Any:
        return (np.asarray(raw, dtype=np.float64) - self.origin) / self.unit

    def from_log_time(self, t: float) -> float:
        order = np.argsort(self.stream.log_time, kind="stable")
        axis = self.report.window.axis(self.stream)[order]
        return float(self.place(np.interp(t, self.stream.log_time[order], axis)))

    def from_event_time(self, t: float) -> float:
        axis = self.report.window.axis(self.stream)
        return float(self.place(np.interp(t, self.stream.event_time, axis)))


def _markers(ax: Any, report: LoopReport, to_x: Any, change_x: float | None) -> None:
    if change_x is not None:
        ax.axvline(change_x, color="black", linestyle="--", linewidth=1.2, label="regime change")
    for decision, name in (("promoted", "promotion"), ("rolled_back", "rollback")):
        for i, o in enumerate(o for o in report.outcomes if o.decision == decision):
            ax.axvline(
                to_x(o.at), color=COLORS[decision], linewidth=1.5, alpha=0.8, label=name if i == 0 else None
            )


def plot_error(report: LoopReport, stream: ScoredStream, path: Path) -> Path:
    plt = _pyplot()
    axis = Axis.of(report, stream)
    fig, ax = plt.subplots(figsize=(10, 5), dpi=110)
    spec = report.window
    for endpoint, version, mask in version_groups(stream):
        series = windows(stream, spec, mask)
        x = axis.place(np.asarray([(w.start + w.end) / 2 for w in series]))
        y = [error_value(w.metrics["loop"], stream.task) for w in series]
        ax.plot(x, y, marker="o", markersize=3, linewidth=1.8, label=f"loop: {endpoint} v{version}")
    series = report.series
    x = axis.place(np.asarray([(w.start + w.end) / 2 for w in series]))
    y = [error_value(w.metrics["loop"], stream.task) for w in series]
    ax.plot(x, y, color="black", linewidth=1.0, alpha=0.6, label="loop: all traffic", zorder=1)
    for source, style in (("frozen", "--"), ("baseline", ":")):
        y = [error_value(w.metrics[source], stream.task) for w in series]
        name = report.frozen_label if source == "frozen" else f"baseline ({report.baseline_name})"
        ax.plot(x, y, linestyle=style, color=COLORS[source], linewidth=2.0, label=name, zorder=4)
    change = None if report.change_at is None else axis.from_event_time(report.change_at)
    _markers(ax, report, axis.from_log_time, change)
    metric = "MAE" if stream.task == "regression" else "error rate (1 - accuracy)"
    ax.set_title(f"Prequential {metric} per window: the loop vs a frozen model and a naive baseline")
    ax.set_xlabel(axis.label)
    ax.set_ylabel(metric)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    _legend(ax, loc="upper left", fontsize=8, framealpha=0.9)
    return _save(fig, plt, path)


def log_clock(report: LoopReport, stream: ScoredStream) -> tuple[float, float, str]:
    """(origin, unit, axis label) of the drift and traffic figures: the log's clock."""
    times = [float(stream.log_time.min())] if len(stream) else []
    times += [d.window_start for d in report.drift] + [r.at for r in report.rollouts]
    end = [float(stream.log_time.max())] if len(stream) else []
    end += [d.window_end for d in report.drift] + [r.at for r in report.rollouts]
    origin = min(times) if times else 0.0
    unit, name = time_unit((max(end) if end else 0.0) - origin)
    return origin, unit, f"wall-clock time, {name} since the first record"


def _change_on_log_clock(report: LoopReport, stream: ScoredStream) -> float | None:
    if report.change_at is None or not len(stream):
        return None
    return float(np.interp(report.change_at, stream.event_time, stream.log_time))


def plot_drift(report: LoopReport, stream: ScoredStream, path: Path) -> Path:
    plt = _pyplot()
    origin, unit, label = log_clock(report, stream)
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=110)
    tested = [(d, p) for d in report.drift if (p := min_p_value(d)) is not None]
    for predictor in sorted({d.predictor for d, _ in tested}):
        mine = [(d, p) for d, p in tested if d.predictor == predictor]
        x = [(d.window_end - origin) / unit for d, _ in mine]
        ax.plot(
            x,
            [max(p, 1e-12) for _, p in mine],
            marker="o",
            markersize=3,
            linewidth=1,
            label=f"{predictor}: min p-value",
        )
        drifted = [(xx, max(p, 1e-12)) for xx, (d, p) in zip(x, mine, strict=True) if d.verdict == "drift"]
        if drifted:
            ax.scatter(
                *zip(*drifted, strict=True),
                s=50,
                facecolors="none",
                edgecolors="#d62728",
                zorder=3,
                label=f"{predictor}: drift",
            )
    for alpha in sorted({d.alpha for d, _ in tested}):
        ax.axhline(alpha, color="#9467bd", linestyle="-.", linewidth=1.2, label=f"alpha = {alpha:g}")
    for threshold in sorted(
        {d.threshold for d, _ in tested if d.threshold is not None and d.threshold_on == "p_val"}
    ):
        if threshold not in {d.alpha for d, _ in tested}:
            ax.axhline(
                threshold,
                color="#7f7f7f",
                linestyle=":",
                linewidth=1,
                label=f"corrected threshold = {threshold:.3g}",
            )
    change = _change_on_log_clock(report, stream)
    _markers(ax, report, lambda t: (t - origin) / unit, None if change is None else (change - origin) / unit)
    if not tested:
        ax.text(
            0.5, 0.5, "no drift-monitor window was tested", ha="center", va="center", transform=ax.transAxes
        )
    else:
        ax.set_yscale("log")
    ax.set_title("Drift monitor: smallest per-feature p-value of each window")
    ax.set_xlabel(label)
    ax.set_ylabel("min p-value (log scale)")
    ax.grid(alpha=0.3)
    _legend(ax, loc="lower left", fontsize=8, framealpha=0.9)
    return _save(fig, plt, path)


def plot_traffic(report: LoopReport, stream: ScoredStream, path: Path) -> Path:
    plt = _pyplot()
    origin, unit, label = log_clock(report, stream)
    fig, ax = plt.subplots(figsize=(10, 4), dpi=110)
    events = report.rollouts
    if events:
        end = max([e.at for e in events] + ([float(stream.log_time.max())] if len(stream) else []))
        x = [origin] + [e.at for e in events] + [end]
        canary = [0] + [e.weight for e in events] + [events[-1].weight]
        xs = [(t - origin) / unit for t in x]
        ax.step(xs, canary, where="post", linewidth=2, label="canary weight (%)")
        ax.step(xs, [100 - w for w in canary], where="post", linewidth=2, label="main weight (%)")
        for e in events:
            if e.decision == "started" and e.candidate is not None:
                ax.annotate(f"v{e.candidate} on canary", ((e.at - origin) / unit, 30), fontsize=8, ha="left")
    else:
        ax.text(
            0.5, 0.5, "no rollout decision was recorded", ha="center", va="center", transform=ax.transAxes
        )
    change = _change_on_log_clock(report, stream)
    _markers(ax, report, lambda t: (t - origin) / unit, None if change is None else (change - origin) / unit)
    ax.set_ylim(-3, 103)
    ax.set_title("Traffic split over time (rollout controller decisions)")
    ax.set_xlabel(label)
    ax.set_ylabel("traffic weight (%)")
    ax.grid(alpha=0.3)
    _legend(ax, loc="center left", fontsize=8, framealpha=0.9)
    return _save(fig, plt, path)


def _legend(ax: Any, **options: Any) -> None:
    """A legend when something is labelled (matplotlib warns about an empty one)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)


def _save(fig: Any, plt: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def write_plots(
    report: LoopReport, stream: ScoredStream, folder: Path, stem: str = "report"
) -> dict[str, Path]:
    """The three PNGs, ``<stem>-error.png``, ``<stem>-drift.png``, ``<stem>-traffic.png`` in ``folder``."""
    return {
        "error": plot_error(report, stream, folder / f"{stem}-error.png"),
        "drift": plot_drift(report, stream, folder / f"{stem}-drift.png"),
        "traffic": plot_traffic(report, stream, folder / f"{stem}-traffic.png"),
    }
