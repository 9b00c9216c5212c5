"""One self-contained HTML file: the figures embedded as ``data:image/png;base64`` URIs, inline CSS, no
script and no external URL, so it opens anywhere (mailed, attached to a ticket, offline)."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from driftloop_feedback.report.metrics import Metrics
from driftloop_feedback.report.summary import LoopReport, min_p_value

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0 1.5em; }
.note { color: #666; font-size: 0.9em; }
"""


def _num(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.{digits}g}"


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _metrics_rows(report: LoopReport, sets: Sequence[tuple[str, Mapping[str, Metrics], int | str]]) -> str:
    names = list(report.overall["loop"])
    rows = []
    for label, metrics, n in sets:
        for source in ("loop", "frozen", "baseline"):
            rows.append([label, source, str(n), *(_num(metrics[source][m]) for m in names)])
    return _table(["examples", "predictions", "rows", *names], rows)


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def render_html(
    report: LoopReport, images: Mapping[str, Path], title: str = "driftloop: the loop's report"
) -> str:
    d = report.to_dict()
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"]
    parts.append(f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>")
    parts.append(
        f"<p>{report.rows} labelled examples ({escape(report.task)}); {d['drift_events']} drift events; "
        f"{d['candidates']} candidates; {d['promotions']} promoted, {d['rollbacks']} rolled back. "
        f"Frozen: {escape(report.frozen_label)}. Baseline: {escape(report.baseline_name)}.</p>"
    )
    sets: list[tuple[str, Mapping[str, Metrics], int | str]] = [("all", report.overall, report.rows)]
    if report.before is not None and report.after is not None and report.change_at is not None:
        sets.append(("before the change", report.before.metrics, report.before.rows))
        sets.append(("after the change", report.after.metrics, report.after.rows))
    parts.append("<h2>Prequential metrics</h2>" + _metrics_rows(report, sets))
    parts.append(
        f"<p class='note'>Rows scored: {escape(str(report.scored))}. Duplicates read once: "
        f"{report.duplicates}. Undecodable records skipped: {escape(str(report.undecodable))}.</p>"
    )
    for note in report.notes:
        parts.append(f"<p class='note'>{escape(note)}</p>")
    by_version = [(f"{v.predictor} v{v.model_version}", v.metrics, v.rows) for v in report.by_version]
    parts.append("<h2>Per predictor and model version</h2>" + _metrics_rows(report, by_version))
    for key, alt in (
        ("error", "error over time"),
        ("drift", "drift p-values"),
        ("traffic", "traffic weights"),
    ):
        if key in images:
            parts.append(f"<h2>{escape(alt.capitalize())}</h2>" + _image(images[key], alt))
    drifts = [x for x in report.drift if x.verdict == "drift"]
    parts.append(f"<h2>Drift events ({len(drifts)} of {len(report.drift)} windows judged)</h2>")
    parts.append(
        _table(
            ["window end", "predictor", "version", "rows", "min p-value", "alpha"],
            [
                [
                    _when(x.window_end),
                    x.predictor,
                    x.model_version,
                    str(x.rows),
                    _num(min_p_value(x)),
                    _num(x.alpha),
                ]
                for x in drifts
            ],
        )
    )
    if report.candidates is not None:
        parts.append(f"<h2>Candidates ({len(report.candidates)})</h2>")
        parts.append(
            _table(
                ["version", "parent", "trigger", "validation", "rollout", "reason"],
                [
                    [
                        str(c.version),
                        _num(c.parent_version),
                        c.trigger,
                        c.validation or "-",
                        c.rollout or "-",
                        c.reason,
                    ]
                    for c in report.candidates
                ],
            )
        )
    parts.append("<h2>Rollouts</h2>")
    parts.append(
        _table(
            ["at", "candidate", "outcome", "weight", "reason"],
            [[_when(o.at), _num(o.candidate), o.decision, str(o.weight), o.reason] for o in report.outcomes],
        )
    )
    parts.append("<details><summary>Every rollout decision</summary>")
    parts.append(
        _table(
            ["at", "deployment", "decision", "candidate", "weight", "result", "reason"],
            [
                [_when(e.at), e.deployment, e.decision, _num(e.candidate), str(e.weight), e.result, e.reason]
                for e in report.rollouts
            ],
        )
    )
    parts.append("</details></body></html>\n")
    return "".join(parts)


def write_html(report: LoopReport, images: Mapping[str, Path], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, images), encoding="utf-8")
    return path
