"""Learning: feature construction, the incremental estimator, training and registration."""

from driftloop.learning.estimator import IncrementalRegressor
from driftloop.learning.features import FeatureSpec, FeatureTable, build_features, with_labels

__all__ = ["FeatureSpec", "FeatureTable", "IncrementalRegressor", "build_features", "with_labels"]
