"""``driftloop replay DATA``: replay a plant's own telemetry with delayed ground truth.

By default live: the initial model is trained and registered, then the rest of the rows run through the
whole loop as in production (``driftloop.cli.replay_live``). ``--offline`` runs the prequential evaluation in
this process (loop vs frozen vs baseline). Both print the summary table and write the same JSON report,
with the HTML report beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from driftloop.cli.replay_html import write_html
from driftloop.replay.delay import LabelDelay
from driftloop.replay.errors import ReplayError
from driftloop.replay.models import DEFAULT_MODEL, MODELS
from driftloop.replay.offline import load, replay_offline
from driftloop.replay.prequential import SOURCES, ReplayPlan
from driftloop.replay.report import build_report, write_report
from driftloop.replay.table import ColumnOptions


def _columns(text: str | None) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip()) if text else ()


@click.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--target", required=True, help="The column to predict.")
@click.option("--time", "time_col", help="Event time column (unix seconds or timestamps).")
@click.option("--asset", help="Asset column (baselines and label inputs are per asset).")
@click.option("--task", type=click.Choice(["regression", "classification"]), help="Default: inferred.")
@click.option("--features", help="COL,COL,... (default: every other numeric column).")
@click.option("--label-delay", default="1", show_default=True, help="Rows (N) or a duration (30s, 15min).")
@click.option(
    "--train-fraction", default=0.2, show_default=True, type=float, help="Leading share trained on."
)
@click.option(
    "--model",
    default=DEFAULT_MODEL,
    show_default=True,
    help="One of: " + "; ".join(f"{t}: {', '.join(m)}" for t, m in MODELS.items()),
)
@click.option("--label-lags", default=0, show_default=True, type=int, help="Last N known labels as inputs.")
@click.option("--batch", default=1, show_default=True, type=int, help="Labels learned per partial_fit.")
@click.option(
    "--header/--no-header", default=None, help="Whether the CSV has a header line (default: sniffed)."
)
@click.option("--names", help="Column names of a CSV without a header: COL,COL,...")
@click.option("--report", "report_path", type=click.Path(path_type=Path), help="Write the JSON report here.")
@click.option("--offline", is_flag=True, help="Evaluate offline in this process instead of the live loop.")
@click.option("--rows-per-call", default=10, show_default=True, type=int, help="Live: rows per V2 request.")
@click.option("--max-rate", type=float, help="Live: send at most this many rows per second.")
@click.option(
    "--online",
    is_flag=True,
    help="Live: the served model also learns each label in place once revealed, before the next request "
    "(the ingress's learn route; use --rows-per-call 1 for the label delay to hold row by row).",
)
@click.option(
    "--settle-s",
    default=30.0,
    show_default=True,
    type=float,
    help="Live: after the last request, wait at most this long for the trainer to read every label.",
)
def replay(data: Path, **options: Any) -> None:
    """Replay DATA (CSV or Parquet): predict each row, learn its label once revealed, and compare the
    learning model with a frozen copy and the naive baseline."""
    console = Console(stderr=True)
    try:
        columns = ColumnOptions(
            target=options["target"],
            time=options["time_col"],
            asset=options["asset"],
            features=_columns(options["features"]),
            task=options["task"],
        )
        table = load(data, columns, header=options["header"], names=_columns(options["names"]))
        if options["online"] and options["offline"]:
            raise ReplayError(
                "--online is a live-replay option: the offline replay always learns every label"
            )
        if options["label_lags"] < 0 or options["batch"] < 1 or options["rows_per_call"] < 1:
            raise ReplayError("--label-lags must be >= 0, --batch >= 1 and --rows-per-call >= 1")
        plan = ReplayPlan(
            delay=LabelDelay.parse(options["label_delay"]),
            model=options["model"],
            train_fraction=options["train_fraction"],
            label_lags=options["label_lags"],
            batch=options["batch"],
        )
        plan.delay.reveal_steps(len(table), table.time)  # a duration without --time is refused here
        _describe(console, table, plan)
        if options["offline"]:
            run = _offline(console, data, table, plan)
        else:
            run = _live(console, data, table, plan, options)
    except ReplayError as exc:
        raise click.ClickException(str(exc)) from exc
    report = build_report(run)
    Console().print(_summary(report))
    if options["report_path"]:
        path = write_report(report, options["report_path"])
        console.print(f"report written to {path}\n                  {write_html(report, path)}")
    live = report.get("live")
    if live is not None and (
        live["failed_calls"] or live.get("online_learn_failed_calls")
    ):  # counted, shown in the report, and the command fails
        learn_failed = live.get("online_learn_failed_calls", 0)
        raise click.ClickException(
            f"{live['failed_calls']} of {live['calls']} requests and {learn_failed} "
            f"online-learning calls through the ingress failed (first: {live['failures'][0]}); see the logs "
            f"in {live['run_home']}/run"
        )


def _offline(console: Console, data: Path, table: Any, plan: ReplayPlan) -> Any:
    total = len(table) - round(len(table) * plan.train_fraction)
    with Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task_id = bar.add_task("rows", total=max(total, 1))
        return replay_offline(data, table, plan, lambda done: bar.update(task_id, completed=done))


def _live(console: Console, data: Path, table: Any, plan: ReplayPlan, options: dict[str, Any]) -> Any:
    from driftloop.cli.demo_loop import topic_names
    from driftloop.cli.replay_graph import check_monitor_settings, worker_settings
    from driftloop.cli.replay_live import LiveOptions, replay_live
    from driftloop.cli.train import quiet_third_party_logs
    from driftloop.settings import StateSettings

    check_monitor_settings(worker_settings(topic_names("check"), "check", None))
    quiet_third_party_logs()
    home = StateSettings().resolved_home().absolute()
    live = LiveOptions(
        home / "replay",
        rows_per_call=options["rows_per_call"],
        settle_s=options["settle_s"],
        max_rate=options["max_rate"],
        online=options["online"],
    )
    try:
        return replay_live(str(data), table, plan, live, console)
    except RuntimeError as exc:  # the loop exited, a worker never came up, the feedback API refused
        raise ReplayError(f"the live replay stopped: {exc}") from exc


def _describe(console: Console, table: Any, plan: ReplayPlan) -> None:
    console.print(f"task: {table.task} ({table.task_reason})")
    console.print(f"features ({len(table.features)}): {', '.join(table.features)}")
    if table.ignored_columns:
        console.print(f"left out (not numeric): {', '.join(table.ignored_columns)}")
    if plan.label_lags:
        console.print(f"inputs from ground truth already arrived: the last {plan.label_lags} known label(s)")
    if table.dropped:
        console.print(f"dropped rows: {table.dropped} (features still missing after forward-fill)")
    console.print(f"label delay: {plan.delay.describe()}; model: {plan.model}")


def _summary(report: dict[str, Any]) -> Table:
    title = f"{report['task']}: {report['rows']} rows replayed {report['mode']} ({report['model']})"
    table = Table(title=title)
    table.add_column("metric")
    for source in SOURCES:
        table.add_column(source, justify="right")
    for metric in report["loop"]:
        table.add_row(metric, *(_number(report[s][metric]) for s in SOURCES))
    table.add_row("rows scored", *(str(report["scored"][s]) for s in SOURCES))
    rate = report["rows_per_second"]
    caption = f"baseline: {report['baseline_name']}; {rate or 0:.0f} rows/s"
    if report["mode"] == "live":
        counts = ("drift_events", "candidates", "promotions", "rollbacks")
        caption += "; " + ", ".join(f"{c.replace('_', ' ')} {report[c]}" for c in counts)
        if report.get("live", {}).get("online"):
            caption += f"; served model learned {report['live']['online_learned_rows']} labels in place"
    table.caption = caption
    return table


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
