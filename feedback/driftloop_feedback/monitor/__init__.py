"""The drift monitor: reads the request log off the request path, windows each served model version's
input features by count and time, tests each window against that version's drift reference, and emits
drift events (topic ``driftloop.drift``) and Prometheus metrics. See docs/drift-monitor.md."""
