"""``Seldon-Puid`` values: random (version 4) UUIDs in their usual text form, as Seldon's executor
generates them (``guuid.New().String()``).

``str(uuid.uuid4())`` costs ~3 us (a getrandom call and a UUID object per id); ``PuidSource`` draws
4 KiB of randomness at a time and formats 16 bytes per id directly (~1 us); the runtime uses the same
scheme in C (``_httpfast.new_puid``, ~0.1 us) where it is built.
"""

from __future__ import annotations

import os
from collections.abc import Callable

_CHUNK = 4096
_VARIANT = "89ab"  # RFC 4122 variant: the top two bits of byte 8 are 10


class PuidSource:
    def __init__(self) -> None:
        self._pool = b""
        self._offset = _CHUNK
        os.register_at_fork(after_in_child=self._forget)  # a child must not reuse the parent's ids

    def _forget(self) -> None:
        self._pool, self._offset = b"", _CHUNK

    def __call__(self) -> str:
        offset = self._offset
        if offset >= len(self._pool):
            self._pool, offset = os.urandom(_CHUNK), 0
        raw = self._pool[offset : offset + 16]
        self._offset = offset + 16
        h = raw.hex()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[raw[8] & 3]}{h[17:20]}-{h[20:]}"


new_puid: Callable[[], str]
try:  # C: the same ids, ~1/10 of the time (see _httpfast.c)
    from driftloop_graphs._httpfast import new_puid
except ImportError:  # a source tree without the built extension
    new_puid = PuidSource()
