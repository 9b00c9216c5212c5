"""driftloop.durable: a failed write leaves the previous file and no temporary file behind."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from driftloop import durable


def test_docstring_examples_run() -> None:
    assert doctest.testmod(durable).failed == 0


def test_a_failed_write_keeps_the_previous_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.bin"
    durable.replace_durably(target, b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(durable.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        durable.replace_durably(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]


def test_many_files_are_all_replaced(tmp_path: Path) -> None:
    files = {tmp_path / f"shard-{i}.snapshot": bytes([i]) for i in range(3)}
    durable.replace_many_durably(files, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {p.name: d for p, d in files.items()}
