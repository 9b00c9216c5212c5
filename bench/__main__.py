"""Run every benchmark: ``python -m bench`` (or one: ``python -m bench.serving``)."""

import importlib
import sys

BENCHMARKS: list[str] = [
    "feedback",
    "eventlog",
    "ingress",
    "runtimes",
    "serving",
    "trainer",
    "drift",
    "replay",
    "loop",
    "nab",
]

if __name__ == "__main__":
    selected = sys.argv[1:] or BENCHMARKS
    for name in selected:
        print(f"== bench.{name}", flush=True)
        importlib.import_module(f"bench.{name}").main()
