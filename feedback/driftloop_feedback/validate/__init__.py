"""The validator: is the challenger better than the champion on the same labelled rows?

- ``confseq.BoundedMeanCS``: an anytime-valid confidence sequence on a bounded mean, O(1) per value.
- ``sequential.PairedLossTest``: feed paired loss differences one at a time or in batches, get a typed
  ``Decision`` (``pass`` / ``fail`` / ``inconclusive`` with its bounds) after each feed. The rollout
  controller reuses it to gate canary steps on live labelled rows.
- ``losses``: per-example losses (absolute, squared, log, zero-one), clipped to a stated bound.
- ``validator.Validator``: scores champion and challenger on a stream of labelled rows, decides, and
  ``publish_verdict`` writes the verdict to the challenger's MLflow version tags and run metrics.
- ``worker.ValidatorWorker`` (``driftloop validator run``): watches the aliases ``champion`` and
  ``challenger``, validates each new challenger on fresh labelled rows and writes its verdict.

See docs/validation.md for the method, its assumptions and its measured error rates.
"""

from driftloop_feedback.validate.confseq import METHOD, BoundedMeanCS
from driftloop_feedback.validate.errors import (
    BadDifferenceError,
    SequenceClosedError,
    ValidatorConfigError,
    ValidatorError,
)
from driftloop_feedback.validate.losses import make_loss, paired_differences
from driftloop_feedback.validate.sequential import Decision, PairedLossTest, Verdict
from driftloop_feedback.validate.settings import ValidationSettings, ValidatorSettings
from driftloop_feedback.validate.validator import (
    ValidationResult,
    Validator,
    VerdictRegistry,
    publish_verdict,
)

__all__ = [
    "METHOD",
    "BadDifferenceError",
    "BoundedMeanCS",
    "Decision",
    "PairedLossTest",
    "SequenceClosedError",
    "ValidationResult",
    "ValidationSettings",
    "Validator",
    "ValidatorConfigError",
    "ValidatorError",
    "ValidatorSettings",
    "Verdict",
    "VerdictRegistry",
    "make_loss",
    "paired_differences",
    "publish_verdict",
]
