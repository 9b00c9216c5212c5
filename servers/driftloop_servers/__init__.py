"""driftloop's MLServer runtimes (see docs/runtimes.md).

- ``driftloop_servers.model_runtime.IncrementalModelRuntime``: the forecaster (MODEL node);
- ``driftloop_servers.outlier_runtime.OutlierRuntime``: outlier flag and score (TRANSFORMER node);
- ``driftloop_servers.drift_runtime.DriftRuntime``: drift of a batch against a reference set;
- ``driftloop_servers.detectors``: the detector interface, its alibi-detect and permissive backends.

Modules are imported by MLServer from ``model-settings.json``; nothing heavy is imported here.
"""
