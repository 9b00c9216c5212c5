"""The replay's HTML report, beside the JSON (same stem, ``.html``): one self-contained file, the plots
embedded as ``data:image/png;base64`` URIs with the loop's report's CSS
(``driftloop_feedback.report.page.CSS``), no script and no external URL.

Plots: each metric per window of rows for loop, frozen and baseline (the report's ``windows``).
Tables: the overall metrics, the loop's counts (live) and the run's settings.
"""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path
from typing import Any

from driftloop.replay.prequential import SOURCES

COLORS = {"loop": "tab:blue", "frozen": "tab:orange", "baseline": "tab:gray"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metric(report: dict[str, Any], metric: str) -> bytes:
    """PNG of ``metric`` per window (x: the window's last row) for each source."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.6))
    try:
        ends = [w["end_row"] for w in report["windows"]]
        for source in SOURCES:
            values = [w[source][metric] for w in report["windows"]]
            points = [(x, v) for x, v in zip(ends, values, strict=True) if v is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker=".", label=source, color=COLORS[source])
        ax.set_xlabel("row (end of window)")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per window of {report['window']['size']} rows ({report['mode']} replay)")
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=100)
        return out.getvalue()
    finally:
        plt.close(fig)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _num(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _delay(delay: dict[str, Any]) -> str:
    return f"{delay['rows']} row(s)" if delay.get("rows") is not None else f"{delay['seconds']:g} s"


def render_html(report: dict[str, Any]) -> str:
    from driftloop_feedback.report.page import CSS

    title = f"driftloop replay ({report['mode']}): {report['source']}"
    metrics = list(report["loop"])
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"]
    parts.append(f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>")
    parts.append(
        f"<p>{escape(report['task'])} ({escape(report['task_reason'])}); target {escape(report['target'])}; "
        f"model {escape(report['model'])}; {report['rows']} rows scored after {report['training_rows']} "
        f"training rows; label delay {escape(_delay(report['label_delay']))}.</p>"
    )
    rows = [[s, str(report["scored"][s]), *(_num(report[s][m]) for m in metrics)] for s in SOURCES]
    parts.append("<h2>Prequential metrics</h2>" + _table(["source", "rows scored", *metrics], rows))
    parts.append(f"<p class='note'>baseline: {escape(report['baseline_name'])}</p>")
    counts = ["drift_events", "candidates", "promotions", "rollbacks"]
    parts.append("<h2>The loop</h2>" + _table(counts, [[_num(report[c]) for c in counts]]))
    live = report.get("live")
    if live:
        facts = [
            ["requests (failed)", f"{live['calls']} ({live['failed_calls']})"],
            ["ground truth rows posted", str(live["truth_rows_posted"])],
            ["labelled examples joined", str(live["labelled_examples"])],
            ["rows served by version", ", ".join(f"v{k}: {v}" for k, v in live["served_versions"].items())],
            [
                "rollout outcomes",
                ", ".join(f"v{o['candidate']} {o['decision']}" for o in live["outcomes"]) or "-",
            ],
        ]
        parts.append(_table(["what", "value"], facts))
    rate = report["rows_per_second"]
    parts.append(f"<p class='note'>{_num(rate)} rows/s; {'; '.join(escape(n) for n in report['notes'])}</p>")
    parts.append("<h2>Per window</h2>")
    for metric in metrics:
        data = base64.b64encode(plot_metric(report, metric)).decode("ascii")
        parts.append(f'<img alt="{escape(metric)} per window" src="data:image/png;base64,{data}">')
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(report: dict[str, Any], json_path: str | Path) -> Path:
    """``<stem>.html`` beside the JSON report."""
    path = Path(json_path).with_suffix(".html")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    return path
