"""Physics of the homes: household load, PV, EV charging, and a battery, from real data packages.

Sources (``Scenario.profiles``):

- ``"bdew"``: the BDEW standard load profile H0 with its dynamisation (``demandlib``), scaled to
  each home's annual consumption; PV from the clear-sky irradiance at the site (``pvlib``, Ineichen
  model) on each roof's plane (tilt 30 degrees, azimuth drawn per home), performance ratio 0.85.
- ``"simbench"``: SimBench's household profiles (H0-A..H0-L) and measured-weather PV profiles from
  the simbench wheel (grid 1-LV-semiurb4), the day of the year matched to the scenario's date.

A standard profile is the mean of many homes; one home is spikier. Each home therefore gets its own
seeded variation on top: a time shift of up to 45 minutes, a slowly varying factor around 1, and
appliance switchings (1-3 kW for 3-30 minutes) whose rate follows the profile, keeping the mean.
EVs charge uncontrolled at 11 kW (three phases) from an arrival time around 18:00 until 8-20 kWh are
in; ``Ev`` is the charger a board drives when an order caps its current.

Everything is returned as integer W per physics step (60 s), aligned to the run's start.
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coordinator.delivery.assets import ev_w
from sim.errors import ProfileError
from sim.scenario import Home, Scenario

STEP_S = 60
EV_W = 11_000  # an EV charges at 11 kW: 16 A on three phases
EV_PHASES = 3
EV_MIN_MA = 6_000  # IEC 61851: a charger does not charge below 6 A
PR = 0.85  # PV performance ratio (inverter, cabling, soiling, temperature)
SIMBENCH_CODE = "1-LV-semiurb4--0-sw"


@dataclass(frozen=True)
class HomePhysics:
    load_w: tuple[int, ...]  # household consumption (EV included), W per step
    pv_w: tuple[int, ...]  # PV generation, W per step
    ev_w: tuple[int, ...] = ()  # the EV's share of load_w, W per step (empty: no EV)

    def net(self, k: int) -> int:
        return self.load_w[k] - self.pv_w[k]


def _need(mod: str) -> None:
    raise ProfileError(f"the simulator needs {mod}: pip install -e '.[sim]'")


@functools.lru_cache(maxsize=4)
def _h0_year(year: int) -> tuple[float, ...]:
    """BDEW H0 (dynamised) of ``year``, kW per 15 minutes for 1,000 kWh/a."""
    try:
        from demandlib import bdew
    except ImportError:
        _need("demandlib")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = bdew.ElecSlp(year).get_scaled_power_profiles({"h0_dyn": 1000})
    return tuple(float(x) for x in p["h0_dyn"].to_numpy())


@functools.lru_cache(maxsize=2)
def _simbench_profiles() -> tuple[dict[str, tuple[float, ...]], dict[str, tuple[float, ...]]]:
    """SimBench household load factors (mean 1) and PV factors (of installed power), per 15 min."""
    try:
        import simbench
    except ImportError:
        _need("simbench")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = simbench.get_simbench_net(SIMBENCH_CODE)
    prof = net.profiles
    loads = {}
    for col in prof["load"].columns:
        if col.startswith("H0") and col.endswith("_pload"):
            v = prof["load"][col].to_numpy(dtype=float)
            loads[col[: -len("_pload")]] = tuple(float(x) for x in v / v.mean())
    pv = {
        col: tuple(float(x) for x in prof["renewables"][col].to_numpy(dtype=float))
        for col in prof["renewables"].columns
        if col.startswith("PV")
    }
    if not loads or not pv:
        raise ProfileError(f"SimBench {SIMBENCH_CODE} carries no household or PV profiles")
    return loads, pv


def _interp(q: Sequence[float], t0: int, n: int) -> list[float]:
    """Values at ``n`` steps from ``t0`` (seconds into the year) from 15-minute values."""
    out = []
    m = len(q)
    for k in range(n):
        x = (t0 + k * STEP_S) / 900.0 - 0.5  # a 15-min value is the mean of its interval
        i = math.floor(x)
        f = x - i
        out.append(q[i % m] * (1 - f) + q[(i + 1) % m] * f)
    return out


def _year_offset(ts: int) -> tuple[int, int]:
    tm = time.gmtime(ts)
    jan1 = ts - ((tm.tm_yday - 1) * 86_400 + tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec)
    return tm.tm_year, ts - jan1


def _vary(base: list[float], rng: random.Random) -> list[float]:
    """One home's load from a profile (W): shift, slow factor, appliance switchings (mean kept)."""
    n = len(base)
    shift = rng.randint(-45, 45) * 60 // STEP_S
    shifted = [base[min(max(k + shift, 0), n - 1)] for k in range(n)]
    out = []
    slow = 1.0
    mean_on = 2000.0 * 16.5 * 60 / STEP_S  # a switching: 1-3 kW for 3-30 min, W x steps
    for k in range(n):
        slow = 1.0 + 0.85 * (slow - 1.0) + rng.gauss(0, 0.08)
        slow = min(max(slow, 0.5), 1.6)
        out.append(0.65 * shifted[k] * slow)  # appliances carry about 35 % of the energy
    for k in range(n):
        if rng.random() < 0.35 * shifted[k] / mean_on:
            w = rng.uniform(1000, 3000)
            for j in range(k, min(k + rng.randint(3, 30) * 60 // STEP_S, n)):
                out[j] += w
    return out


def _ev(rng: random.Random, start: int, n: int) -> list[float]:
    out = [0.0] * n
    day0 = start - start % 86_400
    for d in range(-1, n * STEP_S // 86_400 + 1):
        arrive = day0 + d * 86_400 + 18 * 3600 + rng.randint(-90, 120) * 60
        need_j = rng.uniform(8, 20) * 3.6e6
        k0 = (arrive - start) // STEP_S
        k = max(k0, 0)
        left = need_j - max(0, -k0) * STEP_S * EV_W
        while left > 0 and k < n:
            out[k] = min(float(EV_W), left / STEP_S)
            left -= out[k] * STEP_S
            k += 1
    return out


@functools.lru_cache(maxsize=8)
def _clear_sky(lat: float, lon: float, alt: float, start: int, n: int) -> tuple[Any, Any]:
    """Sun position and clear-sky irradiance (Ineichen) at the site, per step."""
    try:
        import pandas as pd  # type: ignore[import-untyped]
        import pvlib
    except ImportError:
        _need("pvlib")
    times = pd.date_range(pd.Timestamp(start, unit="s", tz="UTC"), periods=n, freq=f"{STEP_S}s")
    loc = pvlib.location.Location(lat, lon, "UTC", alt)
    sun = loc.get_solarposition(times)
    return sun, loc.get_clearsky(times, solar_position=sun)


@functools.lru_cache(maxsize=128)
def _clear_sky_poa(lat: float, lon: float, alt: float, start: int, n: int, azimuth: int) -> tuple[float, ...]:
    """Clear-sky plane-of-array irradiance (W/m2) on a 30-degree roof facing ``azimuth``."""
    import pvlib

    sun, cs = _clear_sky(lat, lon, alt, start, n)
    poa = pvlib.irradiance.get_total_irradiance(
        30, azimuth, sun["apparent_zenith"], sun["azimuth"], cs["dni"], cs["ghi"], cs["dhi"]
    )["poa_global"]
    return tuple(max(0.0, float(x)) for x in poa.fillna(0.0).to_numpy())


@functools.lru_cache(maxsize=8)
def _sky(seed: int, clearness: float, start: int, n: int) -> tuple[float, ...]:
    """The community's shared sky: the share of clear-sky irradiance per step (mean ``clearness``),
    clouds drifting over in runs of minutes to hours."""
    if clearness >= 1:
        return (1.0,) * n
    rng = random.Random(f"{seed}/sky/{start}")
    out = []
    level = clearness
    for _ in range(n):
        level += 0.03 * (clearness - level) + rng.gauss(0, 0.06)
        level = min(max(level, 0.08), 1.0)
        out.append(level)
    return tuple(out)


def home_physics(sc: Scenario, home: Home, start: int | None = None, n: int | None = None) -> HomePhysics:
    start = sc.start if start is None else start
    n = sc.duration_s // STEP_S + 1 if n is None else n
    rng = random.Random(sc.seed * 1_000_003 + home.index)
    year, t0 = _year_offset(start)
    mean_w = home.annual_kwh * 1000 / 8760
    if sc.profiles == "simbench":
        loads, pvs = _simbench_profiles()
        names = sorted(loads)
        lp = loads[names[home.index % len(names)]]
        base = [x * mean_w for x in _interp(lp, t0 % (len(lp) * 900), n)]
        pvp = pvs[sorted(pvs)[home.index % len(pvs)]]
        pv = [x * home.pv_wp for x in _interp(pvp, t0 % (len(pvp) * 900), n)]
        rng.random()  # keep the draws aligned with the bdew source
    else:
        h0 = _h0_year(year)
        base = [x * home.annual_kwh for x in _interp(h0, t0, n)]  # kW per 1,000 kWh -> W
        azimuth = 180 + 5 * rng.randint(-12, 12)  # to 5 degrees: roofs share the irradiance work
        poa = _clear_sky_poa(sc.lat, sc.lon, sc.altitude_m, start, n, azimuth) if home.pv_wp else (0.0,) * n
        sky = _sky(sc.seed, sc.clearness, start, n)
        pv = [home.pv_wp * g * c / 1000 * PR for g, c in zip(poa, sky, strict=True)]
    load = _vary(base, rng)
    ev: list[float] = []
    if home.ev:
        ev = _ev(rng, start, n)
        load = [a + b for a, b in zip(load, ev, strict=True)]
    return HomePhysics(tuple(int(x) for x in load), tuple(int(x) for x in pv), tuple(int(x) for x in ev))


@dataclass
class Battery:
    """A battery behind a meter: follows the coordinator's setpoint within its power and energy."""

    capacity_mwh: int
    max_w: int
    soc_mws: int = 0  # stored energy, mW*s (exact)
    setpoint_w: int = 0  # + charge, - discharge
    until: int = 0  # the setpoint's validity

    def __post_init__(self) -> None:
        self.soc_mws = self.capacity_mwh * 3600 // 2  # starts half full

    @property
    def soc_permille(self) -> int:
        return self.soc_mws * 1000 // max(self.capacity_mwh * 3600, 1)

    def power(self, ts: int, dt: int) -> int:
        """Power it takes (+) or gives (-) over the next ``dt`` seconds, and its new state."""
        w = self.setpoint_w if ts < self.until else 0
        w = max(-self.max_w, min(self.max_w, w))
        cap = self.capacity_mwh * 3600
        if w > 0:
            w = min(w, (cap - self.soc_mws) // (1000 * dt))
        elif w < 0:
            w = -min(-w, self.soc_mws // (1000 * dt))
        self.soc_mws += w * 1000 * dt
        return w


@dataclass
class Ev:
    """The charger of a home's EV as a board drives it. Uncontrolled, the EV takes what the physics
    says (``want``); an order's current per phase caps it until the order expires (below 6 A the
    charger pauses, IEC 61851), and what the cap held back is charged afterwards at up to the
    charger's power: the car stays plugged in until it has its energy."""

    max_w: int = EV_W
    phases: int = EV_PHASES
    limit_w: int | None = None  # the ordered cap, W
    until: int = 0  # the cap's validity
    owed_mws: int = 0  # energy held back and not yet charged, mW*s

    def order(self, ma: int | None, until: int) -> None:
        """An order's ``ev_ma`` (None: the board's default, no cap)."""
        if ma is None:
            self.limit_w = None
            return
        self.limit_w = 0 if ma < EV_MIN_MA else min(self.max_w, ev_w(ma, self.phases))
        self.until = until

    def power(self, want: int, ts: int, dt: int) -> int:
        """Charging power (W) over the next ``dt`` seconds from ``ts``."""
        w = min(self.max_w, want + self.owed_mws // (1000 * dt)) if self.owed_mws > 0 else want
        if self.limit_w is not None and ts < self.until:
            w = min(w, self.limit_w)
        self.owed_mws += (want - w) * 1000 * dt
        return w
