"""Grid model of the microgrid: buses, lines, transformers, where each board connects, and limits.

Rules and units:

- A bus has a unique name and a nominal line-to-line voltage ``vn_kv`` (kV). Voltages are checked
  at every in-service bus below 1 kV (the LV network: busbar, cable joints, connection points);
  the MV side is the slack (the upstream grid) and is not checked.
- A line's ``max_i_a`` is the thermal limit (ampacity) of one circuit in A, rating factor
  included; ``parallel`` circuits share the current. Loading (percent) = current / (max_i_a *
  parallel) * 100, the larger of the two ends, as pandapower reports it.
- A transformer's ``sn_kva`` is the rating of one unit in kVA; loading (percent) is the current
  against rated current, the larger of the two sides, as pandapower reports it (trafo_loading
  "current").
- Limits: a voltage band in per unit (default 0.95-1.05 pu, a planning band that leaves room for
  the MV side; :meth:`Limits.en50160` gives the EN 50160 +-10 % band), line and transformer
  loading at most 100 %, and per connection optional import and export limits in W (int).
- A schedule gives active power per connection bus for one interval in integer W, positive
  when the bus injects into the grid (export, e.g. PV), negative when it draws (import).
  Reactive power at connections is taken as zero (the market trades active energy only), and the
  network is treated as balanced: a board's phase is recorded but the power flow is
  positive-sequence.
- Connection buses of a benchmark grid are the buses that carry a load or a generator in the
  source network, in the source network's bus order. Boards are mapped onto them by
  :func:`assign_boards`: boards sorted by id, the i-th board to connection bus i mod n, so the
  same set of boards always gives the same mapping. A pilot's TOML names each board's bus.

Loaders: :func:`load_pandapower` (CIGRE LV and the Kerber networks by name),
:func:`load_simbench` (SimBench LV codes; the simbench wheel carries the data),
:func:`from_pandapower` (any pandapower net) and :func:`coordinator.delivery.pilot.load_toml`.
pandapower and simbench are imported only when a loader needs them.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from coordinator.delivery.errors import (
    GridDefinitionError,
    InvalidParameterError,
    ScheduleError,
    UnknownBusError,
    UnknownGridError,
)

PHASES = ("L1", "L2", "L3")
LV_MAX_KV = 1.0  # buses below this nominal voltage are the LV network whose voltages are checked

# pandapower element tables whose power the schedule replaces (everything but the slack)
_INJECTIONS = (
    "load",
    "sgen",
    "storage",
    "gen",
    "motor",
    "asymmetric_load",
    "asymmetric_sgen",
    "ward",
    "xward",
)


@dataclass(frozen=True)
class Bus:
    name: str
    vn_kv: float  # nominal line-to-line voltage, kV


@dataclass(frozen=True)
class Line:
    name: str
    from_bus: str
    to_bus: str
    length_km: float
    r_ohm_per_km: float
    x_ohm_per_km: float
    max_i_a: float  # ampacity of one circuit, A (rating factor included)
    parallel: int = 1


@dataclass(frozen=True)
class Transformer:
    name: str
    hv_bus: str
    lv_bus: str
    sn_kva: float  # rating of one unit, kVA (rating factor included)
    parallel: int = 1


@dataclass(frozen=True)
class Connection:
    """One board's connection point."""

    board: str
    bus: str
    phase: str | None = None  # "L1" | "L2" | "L3"; None: three-phase or not known
    import_limit_w: int | None = None  # most it may draw, W
    export_limit_w: int | None = None  # most it may inject, W


@dataclass(frozen=True)
class Limits:
    """What the grid must respect in every interval."""

    v_min_pu: float = 0.95
    v_max_pu: float = 1.05
    line_max_percent: float = 100.0
    trafo_max_percent: float = 100.0

    def __post_init__(self) -> None:
        if not 0.5 <= self.v_min_pu < 1.0 < self.v_max_pu <= 1.5:
            raise InvalidParameterError(
                f"limits: the voltage band must satisfy 0.5 <= v_min_pu < 1 < v_max_pu <= 1.5, "
                f"got {self.v_min_pu}-{self.v_max_pu} pu"
            )
        for key in ("line_max_percent", "trafo_max_percent"):
            v = getattr(self, key)
            if not 0 < v <= 200:
                raise InvalidParameterError(f"limits: {key} must be in (0, 200] percent, got {v}")

    @classmethod
    def en50160(cls) -> Limits:
        """EN 50160's +-10 % band for the supply voltage at the connection points."""
        return cls(v_min_pu=0.90, v_max_pu=1.10)


@dataclass(frozen=True, eq=False)
class GridModel:
    """A microgrid: topology and ratings, connection buses, boards, limits, and the power-flow net.

    ``net`` is a pandapower net of the topology with the slack and no loads or generators (the
    screen adds one constant-power element per connection bus); ``source`` is the network the
    grid was loaded from (with its loads, generators and profiles), or None for a pilot.
    """

    name: str
    buses: tuple[Bus, ...]
    lines: tuple[Line, ...]
    transformers: tuple[Transformer, ...]
    connection_buses: tuple[str, ...]
    connections: tuple[Connection, ...] = ()
    limits: Limits = field(default_factory=Limits)
    peak_load_w: Mapping[str, int] = field(default_factory=dict)  # per connection bus, W
    pv_w: Mapping[str, int] = field(default_factory=dict)  # installed generation per connection bus, W
    net: Any = field(default=None, repr=False)
    source: Any = field(default=None, repr=False)
    bus_index: Mapping[str, int] = field(default_factory=dict, repr=False)  # name -> pandapower index
    line_index: Mapping[str, int] = field(default_factory=dict, repr=False)
    trafo_index: Mapping[str, int] = field(default_factory=dict, repr=False)

    def bus(self, name: str) -> Bus:
        for b in self.buses:
            if b.name == name:
                return b
        raise UnknownBusError(f"grid {self.name!r}: no bus {name!r}")

    @property
    def lv_buses(self) -> tuple[str, ...]:
        """Buses whose voltage is checked (nominal voltage below 1 kV), in grid order."""
        return tuple(b.name for b in self.buses if b.vn_kv < LV_MAX_KV)

    def board_bus(self, board: str) -> str:
        for c in self.connections:
            if c.board == board:
                return c.bus
        raise ScheduleError(f"grid {self.name!r}: no board {board!r} is connected")

    def bus_schedule(self, board_schedule: Mapping[str, int]) -> dict[str, int]:
        """Sum a schedule per board (W, + export) into one per connection bus (W)."""
        where = {c.board: c.bus for c in self.connections}
        out = dict.fromkeys(self.connection_buses, 0)
        for board, w in board_schedule.items():
            if board not in where:
                raise ScheduleError(
                    f"grid {self.name!r}: schedule names board {board!r}, which is not connected"
                )
            if type(w) is not int:
                raise ScheduleError(f"board {board!r}: power must be an integer in W, got {w!r}")
            out[where[board]] += w
        return out


def assign_boards(
    grid: GridModel,
    boards: Iterable[str],
    *,
    import_limit_w: int | None = None,
    export_limit_w: int | None = None,
) -> GridModel:
    """Connect boards to the grid's connection buses deterministically (sorted ids, round robin)."""
    ids = list(boards)
    dup = sorted(b for b, n in Counter(ids).items() if n > 1)
    if dup:
        raise GridDefinitionError(f"grid {grid.name!r}: board ids must be unique, repeated: {', '.join(dup)}")
    if not grid.connection_buses:
        raise GridDefinitionError(f"grid {grid.name!r} has no connection buses to put boards on")
    for key, v in (("import_limit_w", import_limit_w), ("export_limit_w", export_limit_w)):
        _check_limit_w(v, f"assign_boards {key}")
    n = len(grid.connection_buses)
    conns = tuple(
        Connection(b, grid.connection_buses[i % n], None, import_limit_w, export_limit_w)
        for i, b in enumerate(sorted(ids))
    )
    return replace(grid, connections=conns)


def _check_limit_w(v: object, where: str) -> None:
    if v is None:
        return
    if type(v) is not int:
        raise InvalidParameterError(f"{where}: a power limit is an integer in W, got {v!r}")
    if v < 0:
        raise InvalidParameterError(f"{where}: a power limit cannot be negative, got {v} W")


def check_connections(grid: GridModel) -> None:
    """Every connection's bus exists, is an LV connection bus, and its phase and limits are valid."""
    seen: set[str] = set()
    lv = set(grid.lv_buses)
    names = {b.name for b in grid.buses}
    for c in grid.connections:
        if c.board in seen:
            raise GridDefinitionError(f"grid {grid.name!r}: board {c.board!r} is connected twice")
        seen.add(c.board)
        if c.bus not in names:
            raise UnknownBusError(f"grid {grid.name!r}: board {c.board!r} connects to unknown bus {c.bus!r}")
        if c.bus not in lv:
            raise InvalidParameterError(
                f"grid {grid.name!r}: board {c.board!r} connects to bus {c.bus!r}, which is not an LV bus"
            )
        if c.phase is not None and c.phase not in PHASES:
            raise InvalidParameterError(
                f"grid {grid.name!r}: board {c.board!r} phase must be one of {', '.join(PHASES)}, "
                f"got {c.phase!r}"
            )
        _check_limit_w(c.import_limit_w, f"board {c.board!r} import_limit_w")
        _check_limit_w(c.export_limit_w, f"board {c.board!r} export_limit_w")


# --- pandapower and SimBench ---------------------------------------------------------------------


def _pandapower() -> Any:
    import pandapower

    return pandapower


def _names(raw: Sequence[object], index: Sequence[int], prefix: str) -> list[str]:
    """Element names as ids: the name where it is set and unique, else ``name#index`` / ``prefix#index``."""
    clean = [r.strip() if isinstance(r, str) else "" for r in raw]
    counts = Counter(clean)
    out = [c if c and counts[c] == 1 else f"{c or prefix}#{i}" for c, i in zip(clean, index, strict=True)]
    if len(set(out)) != len(out):
        raise GridDefinitionError(f"cannot give every {prefix} a unique name")
    return out


def _f(v: object, default: float = 0.0) -> float:
    x = float(v)  # type: ignore[arg-type]
    return default if math.isnan(x) else x


def from_pandapower(net: Any, name: str, *, limits: Limits | None = None, source: Any = None) -> GridModel:
    """A grid model of a pandapower net (the net itself is not changed).

    Connection buses are the buses with an in-service load, generator or storage unit; their
    nominal load and generation (W) are kept for schedule generators. The model's own net keeps
    the topology, the lines, transformers, switches, shunts and the slack, and drops every
    injection (the schedule provides them).
    """
    if not len(net.ext_grid) or not bool(net.ext_grid.in_service.any()):
        raise GridDefinitionError(f"grid {name!r}: no in-service external grid (slack)")
    if "gen" in net and len(net.gen) and bool(net.gen.in_service.any()):
        raise GridDefinitionError(
            f"grid {name!r}: voltage-controlled generators (net.gen) are not supported; "
            "connections are constant-power"
        )
    if "trafo3w" in net and len(net.trafo3w) and bool(net.trafo3w.in_service.any()):
        raise GridDefinitionError(f"grid {name!r}: three-winding transformers are not supported")
    bus_df = net.bus[net.bus.in_service.astype(bool)]
    bus_ids = [int(i) for i in bus_df.index]
    bus_names = _names(list(bus_df.name), bus_ids, "bus")
    by_idx = dict(zip(bus_ids, bus_names, strict=True))
    buses = tuple(Bus(n, _f(v)) for n, v in zip(bus_names, bus_df.vn_kv, strict=True))

    ld = net.line[
        net.line.in_service.astype(bool) & net.line.from_bus.isin(bus_ids) & net.line.to_bus.isin(bus_ids)
    ]
    line_ids = [int(i) for i in ld.index]
    line_names = _names(list(ld.name), line_ids, "line")
    lines = tuple(
        Line(
            n,
            by_idx[int(r.from_bus)],
            by_idx[int(r.to_bus)],
            _f(r.length_km),
            _f(r.r_ohm_per_km),
            _f(r.x_ohm_per_km),
            _f(r.max_i_ka) * 1000.0 * _f(r.df, 1.0),
            int(r.parallel),
        )
        for n, r in zip(line_names, ld.itertuples(), strict=True)
    )
    td = net.trafo[net.trafo.in_service.astype(bool)]
    trafo_ids = [int(i) for i in td.index]
    trafo_names = _names(list(td.name), trafo_ids, "trafo")
    trafos = tuple(
        Transformer(
            n,
            by_idx[int(r.hv_bus)],
            by_idx[int(r.lv_bus)],
            _f(r.sn_mva) * 1000.0 * _f(r.df, 1.0),
            int(r.parallel),
        )
        for n, r in zip(trafo_names, td.itertuples(), strict=True)
    )

    load_w: dict[int, float] = {}
    pv_w: dict[int, float] = {}
    present: set[int] = set()
    for table, acc in (("load", load_w), ("sgen", pv_w), ("storage", None)):
        if table not in net or not len(net[table]):
            continue
        df = net[table][net[table].in_service.astype(bool)]
        for b, p, s in zip(df.bus, df.p_mw, df.scaling, strict=True):
            if int(b) not in by_idx:
                continue
            present.add(int(b))
            if acc is not None:
                acc[int(b)] = acc.get(int(b), 0.0) + _f(p) * _f(s, 1.0) * 1e6
    conn_idx = sorted(present)
    if not conn_idx:
        raise GridDefinitionError(f"grid {name!r}: no loads or generators, so no connection buses")
    lv = {b.name for b in buses if b.vn_kv < LV_MAX_KV}
    conn = tuple(by_idx[i] for i in conn_idx if by_idx[i] in lv)
    if not conn:
        raise GridDefinitionError(f"grid {name!r}: no loads or generators on the LV network")
    peak = {by_idx[i]: round(load_w.get(i, 0.0)) for i in conn_idx if by_idx[i] in lv}
    pv = {by_idx[i]: round(pv_w.get(i, 0.0)) for i in conn_idx if by_idx[i] in lv}

    work = copy.deepcopy(net)
    for table in _INJECTIONS:
        if table in work and len(work[table]):
            work[table] = work[table].iloc[0:0]
    if "controller" in work and len(work.controller):
        work["controller"] = work.controller.iloc[0:0]
    return GridModel(
        name=name,
        buses=buses,
        lines=lines,
        transformers=trafos,
        connection_buses=conn,
        limits=limits or Limits(),
        peak_load_w=MappingProxyType(peak),
        pv_w=MappingProxyType(pv),
        net=work,
        source=source if source is not None else net,
        bus_index=MappingProxyType({n: i for i, n in by_idx.items()}),
        line_index=MappingProxyType(dict(zip(line_names, line_ids, strict=True))),
        trafo_index=MappingProxyType(dict(zip(trafo_names, trafo_ids, strict=True))),
    )


def _pp_networks() -> dict[str, Callable[[], Any]]:
    pn = _pandapower().networks
    names = [
        "kerber_landnetz_freileitung_1",
        "kerber_landnetz_freileitung_2",
        "kerber_landnetz_kabel_1",
        "kerber_landnetz_kabel_2",
        "kerber_dorfnetz",
        "kerber_vorstadtnetz_kabel_1",
        "kerber_vorstadtnetz_kabel_2",
    ]
    out: dict[str, Callable[[], Any]] = {"cigre_lv": pn.create_cigre_network_lv}
    for n in names:
        out[n] = getattr(pn, f"create_{n}")
    return out


PANDAPOWER_GRIDS = (
    "cigre_lv",
    "kerber_landnetz_freileitung_1",
    "kerber_landnetz_freileitung_2",
    "kerber_landnetz_kabel_1",
    "kerber_landnetz_kabel_2",
    "kerber_dorfnetz",
    "kerber_vorstadtnetz_kabel_1",
    "kerber_vorstadtnetz_kabel_2",
)


def load_pandapower(name: str, *, limits: Limits | None = None) -> GridModel:
    """A benchmark grid shipped with pandapower: ``cigre_lv`` or a Kerber network (see PANDAPOWER_GRIDS)."""
    if name not in PANDAPOWER_GRIDS:
        raise UnknownGridError(f"no pandapower grid {name!r}; known: {', '.join(PANDAPOWER_GRIDS)}")
    net = _pp_networks()[name]()
    return from_pandapower(net, name, limits=limits)


def simbench_lv_codes() -> tuple[str, ...]:
    """SimBench codes of the LV grids (rural1-3, semiurb4-5, urban6; scenarios 0-2; with/without switches)."""
    import simbench

    return tuple(c for c in simbench.collect_all_simbench_codes() if c.startswith("1-LV-"))


def load_simbench(code: str, *, limits: Limits | None = None) -> GridModel:
    """A SimBench LV grid, e.g. ``1-LV-rural1--0-sw`` (its loads, PV and profiles stay in ``source``)."""
    codes = simbench_lv_codes()
    if code not in codes:
        raise UnknownGridError(
            f"no SimBench LV grid {code!r}; known codes look like {codes[0]!r} ({len(codes)} in all)"
        )
    import simbench

    net = simbench.get_simbench_net(code)
    return from_pandapower(net, code, limits=limits)
