"""Inputs from ground truth that has already arrived: the last ``lags`` labels of the row's asset known
when the row is predicted (a production system has them too: the pump forecaster's lagged target).

A regression label is one column per lag; a class label one column per lag holding the class's index
(two classes) or one column per class per lag (one-hot, more classes). Before any label of its asset is
known a row takes ``fill`` (the training part's mean target or most frequent class).

>>> y = np.array([10.0, 11.0, 12.0, 13.0])
>>> last_known(y, np.array([1, 2, 3, 4]), None, 1).tolist()  # delay 1: the previous row's label
[-1, 0, 1, 2]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def last_known(y: np.ndarray, reveal: np.ndarray, asset: np.ndarray | None, lag: int) -> np.ndarray:
    """For each row, the index of its asset's ``lag``-th most recent row whose label is revealed
    before the row is predicted; -1 when there is none."""
    n = len(y)
    known = np.searchsorted(reveal, np.arange(n), side="right")  # labels known before predicting row i
    out = np.full(n, -1, dtype=np.int64)
    groups = [np.arange(n)] if asset is None else [np.flatnonzero(asset == a) for a in np.unique(asset)]
    for rows in groups:
        count = np.searchsorted(rows, known[rows], side="left")  # known rows of this asset
        have = count - lag >= 0
        out[rows[have]] = rows[count[have] - lag]
    return out


def label_inputs(
    y: np.ndarray,
    reveal: np.ndarray,
    asset: np.ndarray | None,
    lags: int,
    classes: Sequence[object] | None,
    fill: object,
) -> tuple[np.ndarray, list[str]]:
    """The [N, k] input columns of the last ``lags`` known labels, and their names."""
    columns: list[np.ndarray] = []
    names: list[str] = []
    for lag in range(1, lags + 1):
        index = last_known(y, reveal, asset, lag)
        values = np.where(index >= 0, y[np.maximum(index, 0)], np.asarray(fill, dtype=object))
        if classes is None:
            columns.append(values.astype(float))
            names.append(f"label_lag{lag}")
        elif len(classes) == 2:
            columns.append((values == classes[1]).astype(float))
            names.append(f"label_lag{lag}=={classes[1]}")
        else:
            for c in classes:
                columns.append((values == c).astype(float))
                names.append(f"label_lag{lag}=={c}")
    if not columns:
        return np.empty((len(y), 0)), []
    return np.column_stack(columns), names
