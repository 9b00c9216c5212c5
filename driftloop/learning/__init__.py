"""Learning: feature construction, training and registration (the incremental estimators live in
``driftloop_servers.estimators``, where the serving image has them; re-exported here)."""

from driftloop_servers.estimators import IncrementalClassifier, IncrementalRegressor

from driftloop.learning.features import FeatureSpec, FeatureTable, build_features, with_labels

__all__ = [
    "FeatureSpec",
    "FeatureTable",
    "IncrementalClassifier",
    "IncrementalRegressor",
    "build_features",
    "with_labels",
]
