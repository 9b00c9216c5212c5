"""The validator worker's logger: its lines keep the logger ``driftloop_feedback.validate.worker`` whichever
module of the worker writes them (log settings and tests select the worker by that name)."""

from __future__ import annotations

import logging

log = logging.getLogger("driftloop_feedback.validate.worker")
