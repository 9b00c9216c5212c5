"""A pump-fleet telemetry simulator: the reference use case's built-in data source.

Each centrifugal pump reports every ``step_s`` seconds: hydraulic load, shaft speed, ambient
temperature, vibration RMS and bearing temperature. The bearing temperature follows a first-order
thermal lag towards an equilibrium set by friction heat (load, speed, wear, seal condition) above
ambient::

    T_eq(t) = T_amb(t) + k_load * load(t) + k_speed * (speed(t) / n_nom)^2 + k_wear * wear(t) + offset(t)
    T(t + dt) = T_eq(t) + (T(t) - T_eq(t)) * exp(-dt / tau)

Ambient and load follow daily cycles; bearing wear grows gradually from an onset day (more friction
heat, more vibration); abrupt regime changes shift an asset's operating point (a process retune) or its
friction offset (a seal replacement). Sensors add noise and faults: stuck values, spikes and dropouts.
Everything is vectorised over assets and time and reproducible by seed.

>>> result = simulate_fleet(SimulatorSettings(assets=2, days=1, seed=7))
>>> sorted(result.telemetry["asset_id"].unique())
['pump-01', 'pump-02']
>>> len(result.telemetry)
576
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from scipy.signal import lfilter

from driftloop.telemetry.schema import PUMP_SCHEMA

DAY_S = 86_400.0
NOMINAL_SPEED_RPM = 1480.0


class SimulatorSettings(BaseModel):
    """What to simulate. Defaults: 5 pumps, 30 days of 5-minute telemetry."""

    assets: int = Field(default=5, ge=1, le=500, description="number of pumps")
    days: float = Field(default=30.0, gt=0, le=3650, description="simulated duration in days")
    step_s: float = Field(default=300.0, gt=0, description="sampling interval in seconds")
    start_time: float = Field(default=1_767_225_600.0, description="unix seconds of the first sample")
    seed: int = Field(default=0, description="random seed; same seed, same data")
    thermal_tau_s: float = Field(default=2400.0, gt=0, description="bearing thermal time constant")
    wear_probability: float = Field(default=0.6, ge=0, le=1, description="share of pumps that wear")
    regime_changes_per_asset: float = Field(default=0.5, ge=0, description="expected abrupt changes")
    spikes_per_day: float = Field(default=0.5, ge=0, description="sensor spikes per pump and day")
    stuck_per_day: float = Field(default=0.05, ge=0, description="stuck-sensor episodes per pump/day")
    dropouts_per_day: float = Field(default=0.1, ge=0, description="dropout episodes per pump and day")


@dataclass(frozen=True)
class FleetEvent:
    """Something that happened to one asset: the ground truth behind drift and outliers."""

    asset_id: str
    event_time: float
    kind: str  # wear_onset | process_retune | seal_replacement | spike | stuck | dropout
    detail: str


@dataclass(frozen=True)
class SimulationResult:
    telemetry: pd.DataFrame  # asset_id, event_time, load_pct, speed_rpm, ambient_c, vibration_mm_s, ...
    events: list[FleetEvent]

    def events_frame(self) -> pd.DataFrame:
        return pd.DataFrame([e.__dict__ for e in self.events], columns=list(FleetEvent.__annotations__))


def simulate_fleet(settings: SimulatorSettings | None = None) -> SimulationResult:
    """Simulate the fleet; rows are ordered by event time, then asset."""
    s = settings or SimulatorSettings()
    rng = np.random.default_rng(s.seed)
    n_assets, n_steps = s.assets, max(2, round(s.days * DAY_S / s.step_s))
    asset_ids = [f"pump-{i + 1:02d}" for i in range(n_assets)]
    t = s.start_time + s.step_s * np.arange(n_steps)  # [T]
    day_phase = 2 * np.pi * ((t % DAY_S) / DAY_S)  # [T]
    events: list[FleetEvent] = []

    ambient = _ambient(rng, t, day_phase, n_assets)
    setpoint = rng.uniform(0.55, 0.75, size=(n_assets, 1)) * np.ones((1, n_steps))
    thermal_offset = rng.normal(0.0, 1.5, size=(n_assets, 1)) * np.ones((1, n_steps))
    _regime_changes(rng, s, t, asset_ids, setpoint, thermal_offset, events)
    load = _load(rng, day_phase, setpoint)
    speed = NOMINAL_SPEED_RPM * (0.55 + 0.45 * load) + rng.normal(0, 4.0, size=load.shape)
    wear = _wear(rng, s, t, asset_ids, events)

    equilibrium = (
        ambient + 22.0 * load + 14.0 * (speed / NOMINAL_SPEED_RPM) ** 2 + 12.0 * wear + thermal_offset
    )
    decay = float(np.exp(-s.step_s / s.thermal_tau_s))
    initial = equilibrium[:, :1]
    bearing, _ = lfilter([0.0, 1.0 - decay], [1.0, -decay], equilibrium, axis=1, zi=decay * initial)
    bearing = bearing + _ar1(rng, (n_assets, n_steps), phi=0.9, sigma=0.08)
    vibration = (1.2 + 1.6 * (speed / NOMINAL_SPEED_RPM) ** 2 + 4.5 * wear**1.5) * rng.lognormal(
        0.0, 0.06, size=load.shape
    )

    measured_temp = bearing + rng.normal(0, 0.15, size=bearing.shape)
    _sensor_faults(rng, s, t, asset_ids, measured_temp, events)
    frame = pd.DataFrame(
        {
            "asset_id": np.repeat(np.array(asset_ids, dtype=object), n_steps),
            "event_time": np.tile(t, n_assets),
            "load_pct": np.round(100.0 * load, 2).ravel(),
            "speed_rpm": np.round(speed, 1).ravel(),
            "ambient_c": np.round(ambient + rng.normal(0, 0.1, size=ambient.shape), 2).ravel(),
            "vibration_mm_s": np.round(vibration, 3).ravel(),
            PUMP_SCHEMA.target_col: np.round(measured_temp, 2).ravel(),
        }
    )
    frame = frame.sort_values(["event_time", "asset_id"], kind="stable").reset_index(drop=True)
    events.sort(key=lambda e: (e.event_time, e.asset_id))
    return SimulationResult(telemetry=frame, events=events)


def _ar1(rng: np.random.Generator, shape: tuple[int, int], phi: float, sigma: float) -> np.ndarray:
    noise = rng.normal(0, sigma, size=shape)
    out: np.ndarray = lfilter([1.0], [1.0, -phi], noise, axis=1)
    return out


def _ambient(rng: np.random.Generator, t: np.ndarray, day_phase: np.ndarray, n_assets: int) -> np.ndarray:
    # Warmest mid-afternoon (15:00), coldest before dawn; a slow weather drift over days shared by the
    # site, and a small per-pump offset (indoor vs outdoor installation).
    daily = 6.0 * np.sin(day_phase - 2 * np.pi * 9 / 24)
    weather = np.cumsum(rng.normal(0, 0.04, size=t.shape))
    site = 18.0 + daily + weather - weather.mean()
    per_pump = rng.normal(0, 1.0, size=(n_assets, 1))
    return site[None, :] + per_pump + _ar1(rng, (n_assets, t.size), phi=0.95, sigma=0.05)


def _load(rng: np.random.Generator, day_phase: np.ndarray, setpoint: np.ndarray) -> np.ndarray:
    # Demand peaks in the working day; each pump follows its own set point with process noise.
    daily = 0.18 * np.sin(day_phase - 2 * np.pi * 8 / 24) + 0.05 * np.sin(2 * day_phase)
    wander = _ar1(rng, (setpoint.shape[0], setpoint.shape[1]), phi=0.98, sigma=0.01)
    return np.clip(setpoint + daily[None, :] + wander, 0.15, 1.0)


def _wear(
    rng: np.random.Generator,
    s: SimulatorSettings,
    t: np.ndarray,
    asset_ids: list[str],
    events: list[FleetEvent],
) -> np.ndarray:
    wear = np.zeros((len(asset_ids), t.size))
    span = t[-1] - t[0]
    for i, asset in enumerate(asset_ids):
        if rng.random() >= s.wear_probability:
            continue
        onset = t[0] + rng.uniform(0.2, 0.7) * span
        to_failure = rng.uniform(0.6, 1.5) * span  # time from onset to a fully worn bearing
        wear[i] = np.clip((t - onset) / to_failure, 0.0, None) ** 2
        events.append(FleetEvent(asset, float(onset), "wear_onset", f"full wear after {to_failure:.0f}s"))
    return np.minimum(wear, 1.0)


def _regime_changes(
    rng: np.random.Generator,
    s: SimulatorSettings,
    t: np.ndarray,
    asset_ids: list[str],
    setpoint: np.ndarray,
    thermal_offset: np.ndarray,
    events: list[FleetEvent],
) -> None:
    for i, asset in enumerate(asset_ids):
        for _ in range(rng.poisson(s.regime_changes_per_asset)):
            k = int(rng.integers(t.size // 4, t.size))
            if rng.random() < 0.5:
                shift = float(rng.choice([-1, 1]) * rng.uniform(0.1, 0.2))
                setpoint[i, k:] += shift
                events.append(FleetEvent(asset, float(t[k]), "process_retune", f"load {shift:+.2f}"))
            else:
                shift = float(rng.uniform(3.0, 6.0))
                thermal_offset[i, k:] += shift
                events.append(FleetEvent(asset, float(t[k]), "seal_replacement", f"friction {shift:+.1f}C"))


def _sensor_faults(
    rng: np.random.Generator,
    s: SimulatorSettings,
    t: np.ndarray,
    asset_ids: list[str],
    temp: np.ndarray,
    events: list[FleetEvent],
) -> None:
    days = (t[-1] - t[0] + s.step_s) / DAY_S
    n = t.size
    for i, asset in enumerate(asset_ids):
        for k in rng.integers(0, n, size=rng.poisson(s.spikes_per_day * days)):
            jump = float(rng.choice([-1, 1]) * rng.uniform(15, 30))
            temp[i, k] += jump
            events.append(FleetEvent(asset, float(t[k]), "spike", f"{jump:+.1f}C"))
        for k in rng.integers(0, n, size=rng.poisson(s.stuck_per_day * days)):
            length = int(rng.integers(12, 72))  # 1-6 hours at 5-minute steps
            temp[i, k : k + length] = temp[i, k]
            events.append(FleetEvent(asset, float(t[k]), "stuck", f"{length} samples"))
        for k in rng.integers(0, n, size=rng.poisson(s.dropouts_per_day * days)):
            length = int(rng.integers(3, 24))
            temp[i, k : k + length] = np.nan
            events.append(FleetEvent(asset, float(t[k]), "dropout", f"{length} samples"))
