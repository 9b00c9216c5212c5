"""The state store in a local folder: one file per key, written atomically (``driftloop.durable``).
The embedded default: the files are the ones the workers wrote before the store existed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from driftloop.durable import replace_many_durably
from driftloop.statestore.base import StateStoreError, check_key


class DirectoryStore:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / check_key(key)

    def where(self, key: str) -> str:
        return str(self.path(key))

    def read(self, key: str) -> bytes | None:
        target = self.path(key)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateStoreError(f"cannot read {target}: {exc}") from exc

    def write(self, key: str, data: bytes) -> None:
        self.write_many({key: data})

    def write_many(self, items: Mapping[str, bytes]) -> None:
        if not items:
            return
        files = {self.path(key): data for key, data in items.items()}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            replace_many_durably(files, self.directory)
        except OSError as exc:
            raise StateStoreError(
                f"cannot write {exc.filename or self.directory}: {exc}; check disk space"
            ) from exc

    def discard(self, key: str) -> str:
        target = self.path(key)
        aside = target.with_name(target.name + ".discarded")
        try:
            os.replace(target, aside)
        except OSError as exc:
            raise StateStoreError(f"cannot move {target} aside: {exc}") from exc
        return str(aside)

    def close(self) -> None:
        return None
