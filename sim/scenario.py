"""Scenarios: one TOML file describes a community, its assets, market, grid, faults and run.

Format (see sim/scenarios/*.toml for complete examples; unknown keys are refused)::

    name = "quartierstrom"
    title = "Quartierstrom-like neighbourhood, 37 homes"
    seed = 2019                  # every random choice (assets, noise, faults) follows from it
    date = "2025-06-21"          # first simulated day (UTC)
    start_h = 0                  # hour of that day the run starts
    duration_h = 24
    speedup = 0                  # 0: as fast as the machine goes; N: simulated time runs N x real
    reading_s = 300              # boards sign a reading this often (simulated seconds)
    boards = "virtual"           # virtual | firmware (in-process) | micropython (processes)

    [site]                       # for the sun: latitude, longitude, altitude
    lat = 47.12
    lon = 9.31
    altitude_m = 430
    clearness = 0.6              # mean share of the clear-sky irradiance that gets through the
                                 #   clouds (1: a clear day); passing clouds vary it per minute

    [market]                     # as in the coordinator's config (mc/kWh)
    scheme = "pairwise"
    interval_s = 900
    feed_in = 4000
    retail = 20750
    grid_fee = 6000
    grid_fee_local = 3000
    settle_delay_s = 60
    # [market.sharing] keys = {...}, community_price = ...   (self_consumption)

    [grid]                       # optional: where each board connects
    pilot = "feeder.toml"        # a pilot grid (coordinator/delivery/pilot.py), beside the scenario
    # simbench = "1-LV-semiurb4--0-sw"

    [delivery]                   # optional, with a [grid]
    check = true                 # the coordinator checks each interval's schedule against the grid
                                 #   and redispatches PV limits and batteries (default: true with a grid)

    [[group]]                    # `count` homes named <prefix>01.. with the same kind of assets
    prefix = "h"
    count = 28
    annual_kwh = [2500, 6000]    # a number, or a [low, high] range drawn per home
    pv_kwp = [4, 15]
    feeder = "f1"                # or feeders = ["f1", "f2"] round robin
    ev_share = 0.2               # share of the group's homes with an EV (charges 18:00, 11 kW)
    battery_kwh = 0              # behind-the-meter battery, dispatched by the coordinator
    battery_kw = 0

    [[flex]]                     # a grid operator's flexibility request (coordinator/delivery/flexibility.py)
    congestion_point = "f2"
    start = "17:00"              # time of day
    hours = 2
    direction = "reduce"
    power_w = 15000
    price_cap = 30000

    [faults]                     # see sim/faults.py
"""

from __future__ import annotations

import calendar
import random
import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from coordinator.market import Contract
from coordinator.site import Asset, TouWindow
from sim.errors import ScenarioError
from sim.faults import Faults, parse_faults

HERE = Path(__file__).resolve().parent / "scenarios"
BOARD_KINDS = ("virtual", "firmware", "micropython")

_TOP = {
    "name", "title", "seed", "date", "start_h", "duration_h", "speedup", "reading_s", "boards",
    "site", "market", "grid", "delivery", "group", "flex", "faults", "profiles", "notes", "community",
    "billing",
}  # fmt: skip
_GROUP = {
    "prefix", "count", "annual_kwh", "pv_kwp", "feeder", "feeders", "ev_share", "battery_kwh",
    "battery_kw", "name", "min_sell", "max_buy", "integrator",
}  # fmt: skip
_MARKET = {
    "scheme", "interval_s", "feed_in", "retail", "grid_fee", "grid_fee_local", "settle_delay_s", "sharing",
    "contracts", "tou", "fees", "platform_fee", "fixed_per_day", "fixed_to",
}  # fmt: skip
_CONTRACT = {"id", "consumer", "producer", "start", "end", "price", "markup", "floor", "cap", "subscription",
             "subscription_to"}  # fmt: skip
_FLEX = {"congestion_point", "start", "hours", "direction", "power_w", "price_cap"}


@dataclass(frozen=True)
class Home:
    """One member with one meter board."""

    member: str
    name: str
    feeder: str | None
    annual_kwh: int  # household consumption per year (BDEW H0 scales to it)
    pv_wp: int  # installed PV, Wp
    ev: bool = False
    battery_mwh: int = 0  # storage capacity, mWh (0: none)
    battery_w: int = 0  # storage power limit, W
    min_sell: int | None = None
    max_buy: int | None = None
    index: int = 0  # position in the community (seeds the home's own profile variation)
    integrator: bool = False  # its battery and EV follow its own plan (integrator home)

    @property
    def board(self) -> str:
        return f"m-{self.member}"[:32]


@dataclass(frozen=True)
class Market:
    scheme: str = "pairwise"
    interval_s: int = 900
    feed_in: int = 4_000
    retail: int = 20_750
    grid_fee: int = 6_000
    grid_fee_local: int = 3_000
    settle_delay_s: int = 60
    sharing: dict[str, Any] | None = None
    contracts: tuple[Contract, ...] = ()  # bilateral: checked at load (members, terms)
    tou: tuple[TouWindow, ...] = ()
    zone_fees: tuple[tuple[str, str, int], ...] = ()
    platform_fee: int = 0
    fixed_per_day: int = 0
    fixed_to: str = "platform"
    assets: tuple[Asset, ...] = ()  # [[community.assets]]
    currency: tuple[str, str, int] = ("CHF", "Rp", 100)  # [billing] currency, minor_unit, minor_per_unit


@dataclass(frozen=True)
class Flex:
    congestion_point: str
    start_s: int  # seconds after the run's start
    hours: int
    direction: str
    power_w: int
    price_cap: int


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    seed: int
    start: int  # Unix seconds
    duration_s: int
    homes: tuple[Home, ...]
    market: Market = field(default_factory=Market)
    speedup: float = 0.0
    reading_s: int = 300
    boards: str = "virtual"
    lat: float = 47.12
    lon: float = 9.31
    altitude_m: float = 430.0
    clearness: float = 1.0
    profiles: str = "bdew"  # bdew (demandlib + pvlib) | simbench
    grid_pilot: Path | None = None
    grid_simbench: str | None = None
    delivery_check: bool = False  # the coordinator's dispatch runs the delivery check on the grid
    flex: tuple[Flex, ...] = ()
    faults: Faults = field(default_factory=Faults)
    source: Path | None = None

    @property
    def end(self) -> int:
        return self.start + self.duration_s

    def shorter(self, hours: float, *, homes: int | None = None, from_h: float = 0) -> Scenario:
        """The same scenario over fewer hours, starting ``from_h`` hours later (optionally only its
        ``homes`` homes, spread over the list, keeping homes with storage so the scenario keeps its point)."""
        hs = self.homes
        if homes is not None and homes < len(hs):
            store = [h for h in hs if h.battery_mwh][:homes]
            rest = [h for h in hs if not h.battery_mwh]
            k = homes - len(store)  # the others evenly across the list: the community's mix stays
            picked = [rest[round(i * (len(rest) - 1) / max(k - 1, 1))] for i in range(k)] if k > 0 else []
            chosen = {h.member for h in store + picked}
            hs = tuple(h for h in hs if h.member in chosen)
        shift = int(from_h * 3600)
        flex = tuple(replace(f, start_s=f.start_s - shift) for f in self.flex)
        return replace(self, start=self.start + shift, duration_s=int(hours * 3600), homes=hs, flex=flex)


def ready() -> list[str]:
    """Names of the scenarios shipped in sim/scenarios/."""
    return sorted(p.stem for p in HERE.glob("*.toml") if not p.stem.endswith("-grid"))


def find(name_or_file: str) -> Path:
    p = Path(name_or_file)
    if p.suffix == ".toml" and p.exists():
        return p
    q = HERE / f"{name_or_file}.toml"
    if q.exists():
        return q
    raise ScenarioError(f"no scenario {name_or_file!r}: give a TOML file or one of {', '.join(ready())}")


def load(name_or_file: str) -> Scenario:
    path = find(name_or_file)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}") from None
    return parse(data, source=path)


def _keys(t: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(t) - allowed)
    if extra:
        raise ScenarioError(f"{where}: unknown key {extra[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _num(t: dict[str, Any], key: str, where: str, default: Any, *, low: float = 0) -> Any:
    v = t.get(key, default)
    if type(v) not in (int, float) or v < low:
        raise ScenarioError(f"{where}.{key} must be a number >= {low}, got {v!r}")
    return v


def _int(t: dict[str, Any], key: str, where: str, default: int, *, low: int = 0) -> int:
    v = t.get(key, default)
    if type(v) is not int or v < low:
        raise ScenarioError(f"{where}.{key} must be an integer >= {low}, got {v!r}")
    return v


def _draw(v: Any, where: str, rng: random.Random) -> float:
    if type(v) in (int, float):
        if v < 0:
            raise ScenarioError(f"{where} must not be negative, got {v!r}")
        return float(v)
    if isinstance(v, list) and len(v) == 2 and all(type(x) in (int, float) for x in v) and 0 <= v[0] <= v[1]:
        return rng.uniform(float(v[0]), float(v[1]))
    raise ScenarioError(f"{where} must be a number or a [low, high] range, got {v!r}")


def hhmm(v: Any, where: str) -> int:
    """``"HH:MM"`` -> seconds after midnight."""
    if isinstance(v, str) and len(v) == 5 and v[2] == ":" and v[:2].isdigit() and v[3:].isdigit():
        h, m = int(v[:2]), int(v[3:])
        if h < 48 and m < 60:
            return h * 3600 + m * 60
    raise ScenarioError(f"{where} must be a time HH:MM, got {v!r}")


def parse(data: dict[str, Any], *, source: Path | None = None) -> Scenario:
    where = str(source or "scenario")
    _keys(data, _TOP, where)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"{where}: name is required")
    seed = _int(data, "seed", where, 1)
    rng = random.Random(seed)
    date = data.get("date", "2025-06-21")
    try:
        day = calendar.timegm(time.strptime(str(date), "%Y-%m-%d"))
    except ValueError:
        raise ScenarioError(f"{where}.date {date!r} is not YYYY-MM-DD") from None
    start = day + int(_num(data, "start_h", where, 0)) * 3600
    duration = int(_num(data, "duration_h", where, 24) * 3600)
    if duration < 900:
        raise ScenarioError(f"{where}.duration_h must be at least 0.25")
    boards = data.get("boards", "virtual")
    if boards not in BOARD_KINDS:
        raise ScenarioError(f"{where}.boards must be one of {', '.join(BOARD_KINDS)}, got {boards!r}")
    m = data.get("market", {})
    _keys(m, _MARKET, f"{where}.market")
    market = Market(
        scheme=str(m.get("scheme", "pairwise")),
        interval_s=_int(m, "interval_s", "market", 900, low=60),
        feed_in=_int(m, "feed_in", "market", 4_000),
        retail=_int(m, "retail", "market", 20_750),
        grid_fee=_int(m, "grid_fee", "market", 6_000),
        grid_fee_local=_int(m, "grid_fee_local", "market", 3_000),
        settle_delay_s=_int(m, "settle_delay_s", "market", 60),
        sharing=m.get("sharing"),
    )
    from coordinator.market import SCHEMES

    if market.scheme not in SCHEMES:
        raise ScenarioError(f"{where}.market.scheme {market.scheme!r} is not one of {', '.join(SCHEMES)}")
    reading_s = _int(data, "reading_s", where, 300, low=10)
    if market.interval_s % reading_s:
        raise ScenarioError(f"{where}.reading_s must divide market.interval_s ({market.interval_s})")
    homes: list[Home] = []
    groups = data.get("group", [])
    if not isinstance(groups, list) or not groups:
        raise ScenarioError(f"{where}: at least one [[group]] of homes is required")
    for gi, g in enumerate(groups):
        gw = f"{where}.group[{gi}]"
        _keys(g, _GROUP, gw)
        count = _int(g, "count", gw, 1, low=1)
        prefix = str(g.get("prefix", "h"))
        feeders = g.get("feeders") or [g.get("feeder")]
        ev_share = _num(g, "ev_share", gw, 0.0)
        n_ev = round(count * ev_share)
        for k in range(count):
            member = prefix if count == 1 else f"{prefix}{k + 1:02d}"
            pv = _draw(g.get("pv_kwp", 0), f"{gw}.pv_kwp", rng)
            homes.append(
                Home(
                    member=member,
                    name=str(g.get("name", member)) if count == 1 else member,
                    feeder=feeders[k % len(feeders)],
                    annual_kwh=int(_draw(g.get("annual_kwh", 4500), f"{gw}.annual_kwh", rng)),
                    pv_wp=int(round(pv * 2) * 500),  # to the half kWp, as roofs are sold
                    ev=k < n_ev,
                    battery_mwh=int(_num(g, "battery_kwh", gw, 0) * 1_000_000),
                    battery_w=int(_num(g, "battery_kw", gw, 0) * 1000),
                    min_sell=g.get("min_sell"),
                    max_buy=g.get("max_buy"),
                    index=len(homes),
                    integrator=bool(g.get("integrator", False)),
                )
            )
    ids = [h.member for h in homes]
    if len(set(ids)) != len(ids):
        raise ScenarioError(f"{where}: member ids repeat; give each group its own prefix")
    market = _options(data, market, {h.member for h in homes}, start, duration, where)
    gr = data.get("grid", {})
    _keys(gr, {"pilot", "simbench"}, f"{where}.grid")
    pilot = None
    if "pilot" in gr:
        pilot = (source.parent if source else Path.cwd()) / str(gr["pilot"])
        if not pilot.exists():
            raise ScenarioError(f"{where}.grid.pilot: {pilot} does not exist")
    simbench = gr.get("simbench")
    if simbench is not None and (not isinstance(simbench, str) or pilot is not None):
        raise ScenarioError(f"{where}.grid: give either pilot or simbench (a SimBench code), got {gr!r}")
    dl = data.get("delivery", {})
    if not isinstance(dl, dict):
        raise ScenarioError(f"{where}.delivery must be a table, got {dl!r}")
    _keys(dl, {"check"}, f"{where}.delivery")
    has_grid = pilot is not None or simbench is not None
    check = dl.get("check", has_grid)
    if type(check) is not bool:
        raise ScenarioError(f"{where}.delivery.check must be true or false, got {check!r}")
    if check and not has_grid:
        raise ScenarioError(f"{where}.delivery.check needs a [grid] (pilot or simbench) to check against")
    flex = []
    for fi, f in enumerate(data.get("flex", [])):
        fw = f"{where}.flex[{fi}]"
        _keys(f, _FLEX, fw)
        at = hhmm(f.get("start"), f"{fw}.start") - (start - day)
        flex.append(
            Flex(
                congestion_point=str(f.get("congestion_point")),
                start_s=at,
                hours=_int(f, "hours", fw, 1, low=1),
                direction=str(f.get("direction", "reduce")),
                power_w=_int(f, "power_w", fw, 10_000, low=1),
                price_cap=_int(f, "price_cap", fw, 30_000),
            )
        )
    site = data.get("site", {})
    _keys(site, {"lat", "lon", "altitude_m", "clearness"}, f"{where}.site")
    clearness = _num(site, "clearness", f"{where}.site", 1.0, low=0.05)
    if clearness > 1:
        raise ScenarioError(f"{where}.site.clearness must be in [0.05, 1], got {clearness}")
    profiles = data.get("profiles", "bdew")
    if profiles not in ("bdew", "simbench"):
        raise ScenarioError(f"{where}.profiles must be bdew or simbench, got {profiles!r}")
    return Scenario(
        name=name,
        title=str(data.get("title", name)),
        seed=seed,
        start=start,
        duration_s=duration,
        homes=tuple(homes),
        market=market,
        speedup=float(_num(data, "speedup", where, 0)),
        reading_s=reading_s,
        boards=boards,
        lat=float(site.get("lat", 47.12)),
        lon=float(site.get("lon", 9.31)),
        altitude_m=float(site.get("altitude_m", 430)),
        clearness=float(clearness),
        profiles=profiles,
        grid_pilot=pilot,
        grid_simbench=simbench,
        delivery_check=check,
        flex=tuple(flex),
        faults=parse_faults(data.get("faults", {}), start - day, f"{where}.faults"),
        source=source,
    )


def _options(
    data: dict[str, Any], market: Market, members: set[str], start: int, duration: int, where: str
) -> Market:
    """The market's tariff options, its bilateral contracts, the community's assets and the bills'
    currency, checked here (by the coordinator's own types) so that a bad one fails at load, never
    hours into a run: a contract or an asset naming no member of the scenario, a contract in a
    scheme other than bilateral, a bilateral scheme without contracts."""
    from coordinator.market import MarketError, Tariff
    from coordinator.site import SiteError, parse_assets, parse_fees, parse_tou
    from coordinator.transaction.billing import PAYEES, BillingError, Currency

    m = data.get("market", {})
    items = m.get("contracts", [])
    if items and market.scheme != "bilateral":
        raise ScenarioError(f'{where}.market.contracts apply to scheme = "bilateral" only')
    if market.scheme == "bilateral" and not items:
        raise ScenarioError(f"{where}.market: the bilateral scheme needs [[market.contracts]]")
    contracts = []
    try:
        for i, x in enumerate(items):
            cw = f"{where}.market.contracts[{i}]"
            if not isinstance(x, dict):
                raise ScenarioError(f"{cw} must be a table")
            _keys(x, _CONTRACT, cw)
            for k in ("consumer", "producer"):
                if x.get(k) not in members:
                    raise ScenarioError(f"{cw}.{k} {x.get(k)!r} is no member of the scenario")
            a = _day(x.get("start"), f"{cw}.start", start)
            b = _day(x.get("end"), f"{cw}.end", start + duration + 86_400)
            contracts.append(
                Contract(
                    str(x.get("id", f"c{i + 1}")), x["consumer"], x["producer"], a, b, x.get("price"),
                    x.get("markup"), x.get("floor"), x.get("cap"), x.get("subscription", 0),
                    x.get("subscription_to", "platform"),
                )
            )  # fmt: skip
        base = Tariff(
            market.feed_in, market.retail, market.grid_fee, market.grid_fee_local, parse_fees(m.get("fees"))
        )
        tou = parse_tou(m.get("tou"), base)
        com = data.get("community", {})
        _keys(com, {"assets"}, f"{where}.community")
        assets = parse_assets(com.get("assets"))
        bl = data.get("billing", {})
        _keys(bl, {"currency", "minor_unit", "minor_per_unit"}, f"{where}.billing")
        cur = Currency(bl.get("currency", "CHF"), bl.get("minor_unit", "Rp"), bl.get("minor_per_unit", 100))
    except (MarketError, SiteError, BillingError) as e:
        raise ScenarioError(f"{where}: {e}") from None
    for asset in assets:
        for who in (asset.member, *(x for x, _ in asset.shares)):
            if who not in members:
                raise ScenarioError(f"{where}.community.assets: {who!r} is no member of the scenario")
    fixed_to = m.get("fixed_to", "platform")
    if fixed_to not in PAYEES:
        raise ScenarioError(f"{where}.market.fixed_to must be one of {', '.join(PAYEES)}, got {fixed_to!r}")
    return replace(
        market,
        contracts=tuple(contracts),
        tou=tou,
        zone_fees=base.zone_fees,
        platform_fee=_int(m, "platform_fee", f"{where}.market", 0),
        fixed_per_day=_int(m, "fixed_per_day", f"{where}.market", 0),
        fixed_to=fixed_to,
        assets=assets,
        currency=(cur.code, cur.minor, cur.per_unit),
    )


def _day(v: object, where: str, default: int) -> int:
    """A contract's ``YYYY-MM-DD`` (UTC day start); ``default`` when not given."""
    if v is None:
        return default
    try:
        return calendar.timegm(time.strptime(str(v), "%Y-%m-%d"))
    except ValueError:
        raise ScenarioError(f"{where} {v!r} is not YYYY-MM-DD") from None
