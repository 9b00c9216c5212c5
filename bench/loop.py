"""Closed-loop benchmark (issue 14): ``python -m bench loop``.

Runs ``driftloop demo`` as a subprocess in a fresh ``DRIFTLOOP_HOME`` (the embedded event log, or Kafka
when ``DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS`` is set), then reads what it left: ``report/report.json``,
``report/demo-run.json`` and the run's topics (``demo.<name>.<suffix>``, the suffix found in the workers'
logs) to print

- **labelled examples from the regime change to the promoted champion**: labelled examples whose
  ``event_time`` is at or after the injected change and that were written to the labelled topic before
  the rollout's ``promoted`` decision (by record timestamp), and how many of them before the winner's
  rollout ``started`` (trained and validated); also the wall time between the first such example and
  the promotion;
- **prequential error, loop vs the frozen initial model**, before and after the change (MAE, RMSE,
  ratio loop / frozen), from the report (both scored on the same stream);
- **label latency**: feedback API accepted -> learned by the challenger, from the trainer's histogram
  ``driftloop_trainer_label_latency_seconds`` (its last /metrics page, kept by the demo as
  ``demo/trainer-metrics.txt``; quantiles are bucket upper bounds); and its first leg, feedback API
  accepted (the truth record's ``received_at``) -> joined example on the labelled topic (record
  timestamp), exact per example.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from driftloop_feedback.labelled_batch import decode_labelled
from driftloop_feedback.records import TruthRecord, decode_feedback

from driftloop.eventlog import open_event_log
from driftloop.eventlog.base import EventLog, Record
from driftloop.settings import StateSettings

REPO = Path(__file__).resolve().parents[1]
TOPIC_SUFFIX = re.compile(rb"demo\.labelled\.([0-9a-f]{8})")


def read_topic(log: EventLog, topic: str) -> list[Record]:
    """Every record of ``topic``, read once by a throw-away consumer group."""
    end = sum(log.end_offsets(topic).values())
    consumer = log.consumer(f"bench-loop-{time.monotonic_ns()}", [topic])
    out: list[Record] = []
    try:
        idle = 0
        while len(out) < end and idle < 20:
            batch = consumer.poll(0.5, 5000)
            idle = 0 if batch else idle + 1
            out.extend(batch)
    finally:
        consumer.close()
    return out


def run_suffix(run_home: Path) -> str:
    for path in sorted((run_home / "run" / "loop").glob("*.log")):
        found = TOPIC_SUFFIX.search(path.read_bytes())
        if found:
            return found.group(1).decode()
    raise SystemExit(f"no demo.labelled.<suffix> topic named in {run_home / 'run' / 'loop'}/*.log")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def analyse(home: Path, change_at: float | None = None) -> dict[str, Any]:
    report = json.loads((home / "report" / "report.json").read_text())
    run = json.loads((home / "report" / "demo-run.json").read_text())
    change_at = float(report["change"]["at"]) if change_at is None else change_at
    run_home = home / "demo"
    suffix = run_suffix(run_home)
    log = open_event_log(StateSettings(home=run_home))
    try:
        labelled = read_topic(log, f"demo.labelled.{suffix}")
        feedback = read_topic(log, f"demo.feedback.{suffix}")
        rollouts = read_topic(log, f"demo.rollouts.{suffix}")
    finally:
        log.close()
    decisions = [json.loads(r.value) for r in rollouts]
    promoted_ms = min((r.timestamp_ms for r, d in zip(rollouts, decisions, strict=True)
                       if d["decision"] == "promoted"), default=None)  # fmt: skip
    winner = next((d["candidate"] for d in decisions if d["decision"] == "promoted"), None)
    canaried_ms = min((r.timestamp_ms for r, d in zip(rollouts, decisions, strict=True)
                       if d["decision"] == "started" and d["candidate"] == winner), default=None)  # fmt: skip
    examples = [(r.timestamp_ms, e) for r in labelled for e in decode_labelled(r.value)]
    after_change = sorted(ms for ms, e in examples if e.event_time >= change_at)
    to_promotion = [ms for ms in after_change if promoted_ms is not None and ms <= promoted_ms]
    received: dict[tuple[str, int], float] = {}
    for r in feedback:
        truth = decode_feedback(r.value)
        if isinstance(truth, TruthRecord):
            received[(truth.request_id, truth.row)] = truth.received_at
    join_latency = [
        ms / 1000.0 - received[(e.request_id, e.row)]
        for ms, e in examples
        if (e.request_id, e.row) in received
    ]
    learned_latency = histogram_quantiles(run_home / "trainer-metrics.txt", (0.5, 0.99))
    trainer_log = run_home / "run" / "loop" / "trainer.log"
    trainer_lines = [ln for ln in trainer_log.read_text().splitlines() if ln.startswith("trainer consumed=")]
    return {
        "report": report,
        "run": run,
        "labelled": len(examples),
        "after_change": len(after_change),
        "to_promotion": len(to_promotion),
        "to_canary": sum(1 for ms in after_change if canaried_ms is not None and ms <= canaried_ms),
        "first_after_change_to_promotion_s": (
            (promoted_ms - after_change[0]) / 1000.0 if promoted_ms is not None and after_change else None
        ),
        "promotions": [d for d in decisions if d["decision"] == "promoted"],
        "join_latency": join_latency,
        "trainer_last": trainer_lines[-1] if trainer_lines else "",
        "learned_latency": learned_latency,
    }


def histogram_quantiles(page: Path, quantiles: tuple[float, ...]) -> dict[float, float] | None:
    """Upper bounds of ``quantiles`` of the trainer's label-latency histogram (None without the page)."""
    from prometheus_client.parser import text_string_to_metric_families

    if not page.is_file():
        return None
    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(page.read_text()):
        if family.name == "driftloop_trainer_label_latency_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    buckets.append((float(sample.labels["le"]), sample.value))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    return {q: next(le for le, count in buckets if count >= q * total) for q in quantiles}


def run_demo(home: Path) -> float:
    env = {**os.environ, "DRIFTLOOP_HOME": str(home), "COLUMNS": "100"}
    env.pop("DRIFTLOOP_MLFLOW_TRACKING_URI", None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "driftloop", "demo", "--checkout", str(REPO)],
        cwd=home.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"driftloop demo failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return time.monotonic() - started


def show(res: dict[str, Any], wall_s: float | None) -> None:
    report, run = res["report"], res["run"]
    if wall_s is not None:
        print(f"driftloop demo: {wall_s:.0f} s wall, {run['calls']} client calls, {run['failed']} failed")
    print(
        f"labelled examples: {res['labelled']} in all, {res['after_change']} after the regime change; "
        f"{res['to_promotion']} from the change to the promoted champion "
        f"({res['to_canary']} of them before its rollout started)"
        + (
            f"; {res['first_after_change_to_promotion_s']:.1f} s wall from the first post-change label"
            if res["first_after_change_to_promotion_s"] is not None
            else "; no promotion"
        )
    )
    for p in res["promotions"]:
        print(f"promoted: v{p['candidate']} (was v{p['champion']}): {p['reason']}")
    print(
        "prequential error (same stream)   rows    loop MAE  frozen MAE  loop/frozen   loop RMSE  frozen RMSE"
    )
    for part in ("before", "after"):
        c = report["change"][part]
        ratio = c["loop"]["mae"] / c["frozen"]["mae"] if c["frozen"]["mae"] else float("nan")
        print(
            f"  {part:<6} the change               {c['rows']:>6}  {c['loop']['mae']:>9.4f}  "
            f"{c['frozen']['mae']:>10.4f}  {ratio:>11.3f}  {c['loop']['rmse']:>10.4f}  "
            f"{c['frozen']['rmse']:>11.4f}"
        )
    lat = res["join_latency"]
    print(
        f"label latency, feedback API accepted -> on the labelled topic (readable by the trainer): "
        f"n={len(lat)} p50={percentile(lat, 50) * 1000:.0f} ms p99={percentile(lat, 99) * 1000:.0f} ms"
    )
    learned = res["learned_latency"]
    if learned is None:
        print("label latency to learned by the challenger: no trainer histogram in this run")
    else:
        print(
            "label latency, feedback API accepted -> learned by the challenger (histogram upper bounds): "
            f"p50 <= {learned[0.5]:g} s, p99 <= {learned[0.99]:g} s"
        )


def main() -> None:
    existing = os.environ.get("DRIFTLOOP_BENCH_LOOP_HOME")  # analyse an earlier run instead of a new one
    if existing:
        show(analyse(Path(existing)), None)
        return
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        home = Path(tmp) / "home"
        wall = run_demo(home)
        show(analyse(home), wall)


if __name__ == "__main__":
    main()
