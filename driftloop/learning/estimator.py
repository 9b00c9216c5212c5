"""Re-export kept for old pickles: models registered before the estimators moved to
``driftloop_servers.estimators`` name ``driftloop.learning.estimator.IncrementalRegressor``, and
unpickling them looks the class up here. New code imports from ``driftloop_servers.estimators``."""

from driftloop_servers.estimators import IncrementalClassifier, IncrementalRegressor

__all__ = ["IncrementalClassifier", "IncrementalRegressor"]
