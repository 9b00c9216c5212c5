"""Replay a plant's own telemetry (CSV or Parquet) through a model with delayed ground truth.

The floor of ``driftloop replay``: reading and checking the file (``loading``, ``table``), the label
delay (``delay``), inputs from ground truth that has already arrived (``inputs``), the named models
(``models``), the offline prequential evaluation (``prequential``) and its report (``report``). The
live replay through the local runtime (``driftloop.cli.replay_live``, an application of the whole loop
like the demo, so it lives with the CLI) builds on these.
"""

from driftloop.replay.errors import ReplayError

__all__ = ["ReplayError"]
