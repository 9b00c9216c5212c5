"""The examples in the report modules' docstrings run."""

from __future__ import annotations

import doctest

import pytest
from driftloop_feedback.report import baseline, metrics


@pytest.mark.parametrize("module", [baseline, metrics])
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0
