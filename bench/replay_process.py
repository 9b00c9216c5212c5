"""``driftloop replay`` in live mode as a process, for the benchmarks that measure the live loop
(``bench.replay``, ``bench.nab``): its own ``DRIFTLOOP_HOME`` under ``folder``, its output in
``folder/replay.out``, its JSON report read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def live_replay_report(data: Path, args: list[str], folder: Path) -> dict[str, Any]:
    """Run ``driftloop replay DATA ARGS --report folder/live.json``; the report (RuntimeError with the
    output's tail when the command fails)."""
    report = folder / "live.json"
    command = [sys.executable, "-m", "driftloop", "replay", str(data), *args, "--report", str(report)]
    env = {**os.environ, "DRIFTLOOP_HOME": str(folder / "home"), "COLUMNS": "120"}
    with (folder / "replay.out").open("w") as out:
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0 or not report.exists():
        tail = (folder / "replay.out").read_text()[-2000:]
        raise RuntimeError(f"the live replay failed (exit {done.returncode}):\n{tail}")
    loaded = json.loads(report.read_text())
    assert isinstance(loaded, dict)
    return loaded
