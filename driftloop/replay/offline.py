"""One offline replay of a file, end to end: read, check, evaluate (the CLI adds the display)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from driftloop.replay.loading import read_table
from driftloop.replay.prequential import ReplayPlan, evaluate
from driftloop.replay.report import ReplayRun
from driftloop.replay.table import ColumnOptions, ReplayTable, prepare


def load(
    path: Path, columns: ColumnOptions, *, header: bool | None = None, names: Sequence[str] = ()
) -> ReplayTable:
    """Read and check ``path``: every bad-data error is raised here, before anything runs."""
    return prepare(read_table(path, header=header, names=names), columns, source=str(path))


def replay_offline(
    path: Path,
    table: ReplayTable,
    plan: ReplayPlan,
    progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> ReplayRun:
    started = clock()
    evaluation = evaluate(table, plan, progress)
    return ReplayRun(str(path), table, plan, evaluation, clock() - started)
