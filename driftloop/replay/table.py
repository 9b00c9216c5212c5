"""Check a telemetry table against the replay's options and turn it into arrays, before anything starts.

Refused, each with a message saying what to do: a missing or misspelt column (the closest names are
offered), a non-numeric feature, a target with empty values, a time column that goes back, a target
with one class, a task that does not fit the target.

Missing feature values: each feature is forward-filled within its asset (a sensor that did not report
holds its last value, as a production feature pipeline would); rows still missing a value (before the
asset's first reading) are dropped and counted in ``dropped``. A feature with no value at all is
refused.

The task, when not given, is inferred: a non-numeric target, or one of at most ``MAX_CLASSES`` distinct
integers, is a classification; any other number a regression. ``task_reason`` says which rule decided.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from driftloop.replay.errors import ReplayError

Task = Literal["regression", "classification"]
MAX_CLASSES = 10


@dataclass(frozen=True)
class ColumnOptions:
    target: str
    time: str | None = None
    asset: str | None = None
    features: Sequence[str] = ()
    task: Task | None = None


@dataclass
class ReplayTable:
    """The checked rows, in file order: features ``X`` [N, F], ``y`` [N], event time (seconds) and
    asset per row when given."""

    X: np.ndarray
    y: np.ndarray
    features: list[str]
    target: str
    task: Task
    task_reason: str
    time: np.ndarray | None
    asset: np.ndarray | None
    classes: list[object] | None
    dropped: dict[str, int] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    forward_filled: int = 0

    def __len__(self) -> int:
        return len(self.y)


def prepare(table: pd.DataFrame, options: ColumnOptions, source: str = "the file") -> ReplayTable:
    """Check ``table`` against ``options`` and return its arrays; raise ``ReplayError`` on bad data."""
    if table.empty:
        raise ReplayError(f"{source} has no rows: pass a file with a header line and rows")
    columns = [str(c) for c in table.columns]
    named = [("--target", options.target), ("--time", options.time), ("--asset", options.asset)]
    named += [("--features", f) for f in options.features]
    for flag, column in named:
        if column is not None and column not in columns:
            raise ReplayError(_missing(flag, column, columns, source))
    target = table[options.target]
    empty = target.isna().to_numpy()
    if empty.any():
        raise ReplayError(
            f"target {options.target!r} is empty (NaN) in {int(empty.sum())} row(s), the first at data "
            f"row(s) {_rows(empty)}: fill or drop those rows (a replay learns from every target)"
        )
    task, reason = _task(target, options)
    times = _times(table, options.time, source)
    assets = None if options.asset is None else table[options.asset].astype(str).to_numpy()
    if times is not None and options.time is not None:
        _check_increasing(times, table[options.time], options.time)
    features, ignored = _features(table, options)
    frame = table[features].astype(float)
    blank = [c for c in features if frame[c].isna().all()]
    if blank:
        raise ReplayError(f"feature(s) {', '.join(map(repr, blank))} hold no value at all: leave them out")
    missing_before = int(frame.isna().to_numpy().sum())
    if missing_before:
        frame = frame.groupby(assets).ffill() if assets is not None else frame.ffill()
    keep = ~frame.isna().any(axis=1).to_numpy()
    dropped = {} if keep.all() else {"missing_features": int((~keep).sum())}
    if not keep.any():
        raise ReplayError(f"every row of {source} misses a feature value even after forward-filling")
    filled = missing_before - int(frame.isna().to_numpy().sum())
    y = target.to_numpy()[keep]
    classes = None
    if task == "classification":
        classes = sorted(pd.unique(y).tolist(), key=str)
        if len(classes) < 2:
            raise ReplayError(
                f"target {options.target!r} holds one class only ({classes[0]!r}): a classifier needs at "
                "least two; check --target, or pass --task regression for a numeric target"
            )
        y = np.asarray(y, dtype=object) if not np.issubdtype(np.asarray(y).dtype, np.number) else y
    else:
        y = np.asarray(y, dtype=float)
    return ReplayTable(
        X=frame.to_numpy(dtype=float)[keep],
        y=y,
        features=features,
        target=options.target,
        task=task,
        task_reason=reason,
        time=None if times is None else times[keep],
        asset=None if assets is None else assets[keep],
        classes=classes,
        dropped=dropped,
        ignored_columns=ignored,
        forward_filled=filled,
    )


def _missing(flag: str, column: str, columns: list[str], source: str) -> str:
    close = difflib.get_close_matches(column, columns, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    shown = ", ".join(repr(c) for c in columns[:20]) + (" ..." if len(columns) > 20 else "")
    return f"{flag} {column!r} is not a column of {source}: {hint}its columns are {shown}"


def _rows(mask: np.ndarray, limit: int = 5) -> str:
    """1-based data row numbers of ``mask``'s first hits."""
    return ", ".join(str(i + 1) for i in np.flatnonzero(mask)[:limit])


def _task(target: pd.Series, options: ColumnOptions) -> tuple[Task, str]:
    numeric = pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target)
    if options.task == "regression":
        if not numeric:
            sample = target[~target.map(_is_number)].iloc[0]
            raise ReplayError(
                f"--task regression needs a numeric target, but {options.target!r} holds {sample!r}: "
                "pass --task classification, or a numeric --target"
            )
        return "regression", "given with --task"
    if options.task == "classification":
        return "classification", "given with --task"
    if not numeric:
        return "classification", f"inferred: {options.target!r} holds labels that are not numbers"
    values = target.to_numpy(dtype=float)
    distinct = np.unique(values)
    if np.all(values == np.round(values)) and len(distinct) <= MAX_CLASSES:
        return "classification", (
            f"inferred: {options.target!r} holds {len(distinct)} distinct integers "
            f"(<= {MAX_CLASSES}); pass --task regression if they are measurements"
        )
    return "regression", f"inferred: {options.target!r} holds numbers ({len(distinct)} distinct values)"


def _is_number(value: object) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def _times(table: pd.DataFrame, column: str | None, source: str) -> np.ndarray | None:
    """Event time in seconds: numbers as they are (e.g. unix seconds), else parsed timestamps."""
    if column is None:
        return None
    raw = table[column]
    if raw.isna().any():
        raise ReplayError(
            f"time column {column!r} is empty in {int(raw.isna().sum())} row(s), the first at data row(s) "
            f"{_rows(raw.isna().to_numpy())}: fill or drop those rows"
        )
    if pd.api.types.is_numeric_dtype(raw):
        return raw.to_numpy(dtype=float)
    try:
        stamps = pd.to_datetime(raw, utc=True, format="mixed")
    except (ValueError, TypeError) as exc:
        raise ReplayError(
            f"time column {column!r} of {source} holds neither numbers nor timestamps ({exc}); "
            "pass a column of unix seconds or ISO timestamps to --time"
        ) from exc
    seconds: np.ndarray = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    return seconds


def _check_increasing(seconds: np.ndarray, raw: pd.Series, column: str) -> None:
    back = np.flatnonzero(np.diff(seconds) < 0)
    if back.size:
        i = int(back[0]) + 1
        raise ReplayError(
            f"time column {column!r} goes back at data row {i + 1} ({raw.iloc[i - 1]} -> {raw.iloc[i]}; "
            f"{back.size} such step(s)): a replay needs rows in time order; sort the file by {column!r}"
        )


def _features(table: pd.DataFrame, options: ColumnOptions) -> tuple[list[str], list[str]]:
    """The feature columns, and the non-numeric columns left out of the default set."""
    reserved = {options.target, options.time, options.asset}
    if options.features:
        features = list(dict.fromkeys(options.features))
        for name in features:
            if name in reserved:
                raise ReplayError(f"--features lists {name!r}, which is the target, time or asset column")
            bad = _non_numeric(table[name])
            if bad is not None:
                raise ReplayError(
                    f"feature {name!r} is not numeric (data row {bad[0]} holds {bad[1]!r}): encode it as "
                    "numbers or leave it out of --features"
                )
        return features, []
    candidates = [str(c) for c in table.columns if str(c) not in reserved]
    features = [c for c in candidates if _non_numeric(table[c]) is None]
    if not features:
        raise ReplayError(
            "no numeric column is left for features: name them with --features (numbers only), "
            f"the non-numeric columns are {', '.join(repr(c) for c in candidates)}"
        )
    return features, [c for c in candidates if c not in features]


def _non_numeric(column: pd.Series) -> tuple[int, object] | None:
    """(1-based data row, value) of the first non-numeric value, None when every value is a number."""
    if pd.api.types.is_bool_dtype(column):
        return 1, column.iloc[0]
    if pd.api.types.is_numeric_dtype(column):
        return None
    present = column.dropna()
    bad = ~present.map(_is_number)
    if bad.any():
        index = present.index[bad.to_numpy()][0]
        return int(column.index.get_loc(index)) + 1, present[index]
    return None
