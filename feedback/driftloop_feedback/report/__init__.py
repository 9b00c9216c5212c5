"""The loop's report: what the loop wrote to its topics, turned into prequential metrics, a JSON report,
PNG figures, one self-contained HTML file and a terminal summary (docs/report.md).

    records = collect(event_log, candidates=MlflowCandidateSource(uri), model_name="pump-bearing-temp")
    stream = score(records.examples, frozen=initial_model, baseline=FeatureColumn(4, "bearing temp"))
    report = build_report(records, stream, window=WindowSpec("log_time", 10.0), change_at=t_change)
    files = write_outputs(report, stream, "out/report.json")  # + report.html, report-*.png beside it
    print_summary(report)

- ``collect``: the topics read to their end offsets by a fresh consumer group (workers' groups untouched);
- ``score``: the loop's served predictions, a frozen model re-scored and a naive baseline, same rows;
- ``build_report`` / ``write_report``: overall, before/after a change, per window, per predictor and
  model version; ``write_html`` / ``write_plots``; ``print_summary`` (rich).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from driftloop_feedback.report.baseline import Baseline, FeatureColumn, LastTruth
from driftloop_feedback.report.candidates import CandidateSource, MlflowCandidateSource, read_candidates
from driftloop_feedback.report.collect import ReportTopics, collect
from driftloop_feedback.report.console import print_summary, summary_table
from driftloop_feedback.report.errors import ReportError
from driftloop_feedback.report.metrics import WindowSpec, metrics_of
from driftloop_feedback.report.page import write_html
from driftloop_feedback.report.plots import write_plots
from driftloop_feedback.report.records import CandidateVersion, LoggedExample, LoopRecords
from driftloop_feedback.report.scoring import ScoredStream, score
from driftloop_feedback.report.summary import LoopReport, build_report, write_report


@dataclass(frozen=True)
class ReportFiles:
    json: Path
    html: Path
    images: dict[str, Path]


def write_outputs(report: LoopReport, stream: ScoredStream, json_path: str | Path) -> ReportFiles:
    """The JSON at ``json_path``; beside it ``<stem>.html`` and ``<stem>-{error,drift,traffic}.png``."""
    json_path = Path(json_path)
    images = write_plots(report, stream, json_path.parent, json_path.stem)
    html = write_html(report, images, json_path.with_suffix(".html"))
    return ReportFiles(write_report(report, json_path), html, images)


__all__ = [
    "Baseline",
    "CandidateSource",
    "CandidateVersion",
    "FeatureColumn",
    "LastTruth",
    "LoggedExample",
    "LoopRecords",
    "LoopReport",
    "MlflowCandidateSource",
    "ReportError",
    "ReportFiles",
    "ReportTopics",
    "ScoredStream",
    "WindowSpec",
    "build_report",
    "collect",
    "metrics_of",
    "print_summary",
    "read_candidates",
    "score",
    "summary_table",
    "write_html",
    "write_outputs",
    "write_plots",
    "write_report",
]
