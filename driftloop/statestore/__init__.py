"""Where the workers' durable state lives (the joiner's snapshots, the trainer's checkpoint, the drift
monitor's snapshot): a small key -> bytes store, each key replaced atomically.

Two backends, picked by ``DRIFTLOOP_STATE_STORE`` (``StateSettings.state_store``):

- ``directory`` (the default): one file per key in a local folder, written atomically (temp file,
  fsync, rename, fsync of the folder): today's files, unchanged on disk;
- ``log``: a compacted Kafka topic used as a changelog, as Kafka Streams does
  (``DRIFTLOOP_STATE_TOPIC``, default ``driftloop.state``): any replica on any node restores what
  another one wrote. See ``changelog`` for the record layout.

A worker commits its consumer offsets only after ``write``/``write_many`` returned: the state holding
them is stored by then.
"""

from driftloop.statestore.base import StateStore, StateStoreError, check_key
from driftloop.statestore.directory import DirectoryStore
from driftloop.statestore.factory import open_state_store

__all__ = ["DirectoryStore", "StateStore", "StateStoreError", "check_key", "open_state_store"]
