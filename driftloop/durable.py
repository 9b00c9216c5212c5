"""Files that are either the previous version or the new one, never half of one: the workers' state
(joiner snapshots, the drift monitor's windows, the trainer's checkpoint, the validator's state) is
written this way before the offsets it covers are committed.

>>> import tempfile
>>> from pathlib import Path
>>> folder = Path(tempfile.mkdtemp())
>>> replace_durably(folder / "state.bin", b"v1")
>>> replace_durably(folder / "state.bin", b"v2")
>>> (folder / "state.bin").read_bytes(), sorted(p.name for p in folder.iterdir())
(b'v2', ['state.bin'])
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it and rename it over ``path``."""
    tmp = path.with_suffix(f"{path.suffix}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sync_directory(directory: Path) -> None:
    """fsync a directory, so that the renames in it survive a power loss."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically and durably (creating its folder). Raises ``OSError``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_synced(path, data)
    sync_directory(path.parent)


def replace_many_durably(files: Mapping[Path, bytes], directory: Path) -> None:
    """Replace each file atomically; all are durable when this returns (one directory sync at the end).
    Raises ``OSError`` naming the file that failed."""
    for path, data in files.items():
        write_synced(path, data)
    sync_directory(directory)
