"""Drift detection benchmark: ``python -m bench drift``.

The drift monitor's batch test on count-bounded windows (docs/drift-monitor.md), on the pump simulator's
own regime changes (process retunes, seal replacements: each pump's first change splits its rows into
"before" and "after"). For each detector kind (the permissive scipy backend and alibi-detect, KS and
CVM, Bonferroni across features, alpha 0.05) side by side on the same draws:

- **false-alarm rate**: windows of rows drawn from the pre-change regime only, each seed against a fresh
  reference sample of that regime (the rate alpha holds over reference draws);
- **detection delay**: a stream of pre-change rows then post-change rows, the change at a random offset
  inside a window; the delay is the number of post-change rows served until the first window that fires
  closes (the monitor emits its verdict when the window closes).

``DRIFTLOOP_BENCH_QUICK=1`` runs fewer seeds. Features ``hour_sin``/``hour_cos`` are left out as in the
loop's test settings (the daily cycle is not drift).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

import numpy as np
from driftloop_servers.detectors import fit_drift_detector

from driftloop.learning.features import FeatureSpec, build_features
from driftloop.telemetry import SimulatorSettings, simulate_fleet

QUICK = os.environ.get("DRIFTLOOP_BENCH_QUICK") == "1"
SEEDS = 4 if QUICK else 12
WINDOW = 500
REFERENCE_ROWS = 2000
KINDS = ("scipy-ks", "scipy-cvm", "alibi-ks", "alibi-cvm")
EXCLUDED = ("hour_sin", "hour_cos")


@dataclass(frozen=True)
class Pools:
    before: np.ndarray
    after: np.ndarray


def pools(seed: int) -> Pools:
    """Feature rows of a simulated fleet split at each pump's first regime change."""
    settings = SimulatorSettings(
        assets=4,
        days=12,
        seed=seed,
        wear_probability=0.0,
        regime_changes_per_asset=1.5,
        spikes_per_day=0.0,
        stuck_per_day=0.0,
        dropouts_per_day=0.0,
    )
    sim = simulate_fleet(settings)
    table = build_features(sim.telemetry, FeatureSpec())
    keep = [i for i, name in enumerate(table.feature_names) if name not in EXCLUDED]
    first: dict[str, float] = {}
    for event in sim.events:
        first.setdefault(event.asset_id, event.event_time)
    change = np.array([first.get(a, np.inf) for a in table.asset_id])
    X = table.X[:, keep]
    return Pools(before=X[table.event_time < change], after=X[table.event_time >= change])


def false_alarms(kind: str, pool: Pools, rng: np.random.Generator) -> tuple[int, int]:
    rows = pool.before[rng.choice(len(pool.before), REFERENCE_ROWS + 4 * WINDOW)]
    detector = fit_drift_detector(kind, rows[:REFERENCE_ROWS], p_val=0.05)
    windows = rows[REFERENCE_ROWS:].reshape(4, WINDOW, -1)
    return sum(bool(detector.predict(w).is_drift) for w in windows), len(windows)


def delay(kind: str, pool: Pools, rng: np.random.Generator) -> int | None:
    reference = pool.before[rng.choice(len(pool.before), REFERENCE_ROWS)]
    detector = fit_drift_detector(kind, reference, p_val=0.05)
    change_at = 2 * WINDOW + int(rng.integers(0, WINDOW))
    stream = np.vstack(
        [
            pool.before[rng.choice(len(pool.before), change_at)],
            pool.after[rng.choice(len(pool.after), 4 * WINDOW)],
        ]
    )
    for end in range(WINDOW, len(stream) + 1, WINDOW):
        if end > change_at and detector.predict(stream[end - WINDOW : end]).is_drift:
            return end - change_at
    return None


def main() -> None:
    print(
        f"drift monitor windows of {WINDOW} rows, reference {REFERENCE_ROWS} rows, alpha 0.05, {SEEDS} seeds"
    )
    data = [pools(seed) for seed in range(SEEDS)]
    head = ("detector", "false alarms", "rate", "delay p50", "max", "missed", "s")
    print("{:<11} {:>14} {:>6} {:>10} {:>6} {:>7} {:>6}".format(*head))
    for kind in KINDS:
        started = time.perf_counter()
        alarms = windows = missed = 0
        delays: list[int] = []
        for seed, pool in enumerate(data):
            rng = np.random.default_rng(1000 + seed)
            a, w = false_alarms(kind, pool, rng)
            alarms, windows = alarms + a, windows + w
            found = delay(kind, pool, rng)
            if found is None:
                missed += 1
            else:
                delays.append(found)
        p50 = f"{statistics.median(delays):.0f}" if delays else "-"
        worst = f"{max(delays)}" if delays else "-"
        print(
            f"{kind:<11} {alarms:>6} / {windows:<6} {alarms / windows:>6.3f} {p50:>10} {worst:>6} "
            f"{missed:>7} {time.perf_counter() - started:>6.1f}"
        )


if __name__ == "__main__":
    main()
