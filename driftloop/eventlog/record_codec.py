"""The C record codec (``_recordcodec``: Kafka record batch v2 records, decoded and encoded), when it
is built. Package installs build it (``hatch_build.py``); a bare source tree has none, and then
``kafka_fetch`` and ``kafka_bulk`` run their Python reference implementations, which produce the same
records and bytes (tests hold both to kafka-python's own reader and builder).

>>> isinstance(NATIVE, bool)
True
"""

from __future__ import annotations

from types import ModuleType

native: ModuleType | None
try:
    from driftloop.eventlog import _recordcodec as native
except ImportError:  # not built: the Python implementations run
    native = None

NATIVE = native is not None
