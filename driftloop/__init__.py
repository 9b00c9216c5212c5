"""driftloop: closed-loop MLOps for industrial models.

Serve (MLServer runtimes in a Seldon graph) -> log (Seldon's Kafka logger format) -> join with delayed
ground truth -> learn (partial_fit) -> validate -> roll out (canary) -> serve.
"""

__version__ = "0.1.0"
