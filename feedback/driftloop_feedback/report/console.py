"""The end-of-run summary on the terminal: a ``rich`` table of loop vs frozen vs baseline (overall and
before / after the change) and the loop's events."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from driftloop_feedback.report.summary import LoopReport


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def summary_table(report: LoopReport) -> Table:
    names = list(report.overall["loop"])
    table = Table(title=f"driftloop: {report.rows} labelled examples ({report.task})")
    table.add_column("examples")
    table.add_column("predictions")
    for name in names:
        table.add_column(name, justify="right")
    segments = [("all", report.overall)]
    if report.before is not None and report.after is not None:
        segments += [("before change", report.before.metrics), ("after change", report.after.metrics)]
    labels = {"loop": "loop", "frozen": report.frozen_label, "baseline": f"baseline: {report.baseline_name}"}
    for i, (segment, metrics) in enumerate(segments):
        for j, source in enumerate(("loop", "frozen", "baseline")):
            table.add_row(
                segment if j == 0 else "",
                labels[source],
                *(_cell(metrics[source][n]) for n in names),
                end_section=j == 2 and i < len(segments) - 1,
            )
    d = report.to_dict()
    table.caption = (
        f"drift events {d['drift_events']} · candidates {d['candidates']} · promoted {d['promotions']} · "
        f"rolled back {d['rollbacks']}"
    )
    return table


def print_summary(report: LoopReport, console: Console | None = None) -> None:
    """Print the table, then one line per rollout outcome with its reason."""
    console = console or Console()
    console.print(summary_table(report))
    for o in report.outcomes:
        reason = f": {o.reason}" if o.reason else ""
        console.print(f"  candidate v{o.candidate} {o.decision.replace('_', ' ')}{reason}", markup=False)
