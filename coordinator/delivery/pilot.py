"""A pilot's grid from a small TOML description, checked on load with errors that name the element.

Format (units in the key names; every table and key other than those shown is refused, so a
typo does not pass silently)::

    name = "pilot"

    [limits]                         # optional; defaults 0.95-1.05 pu, 100 %, 100 %
    v_min_pu = 0.95
    v_max_pu = 1.05
    line_max_percent = 100
    trafo_max_percent = 100

    [slack]                          # optional; default: the first transformer's HV bus at 1.0 pu
    bus = "MV"
    vm_pu = 1.0

    [[bus]]
    name = "MV"
    vn_kv = 20.0                     # nominal line-to-line voltage, kV

    [[transformer]]
    name = "T1"
    hv_bus = "MV"
    lv_bus = "LV0"
    std_type = "0.25 MVA 20/0.4 kV"  # a pandapower standard type, or all of:
    # sn_kva = 250, vn_hv_kv = 20, vn_lv_kv = 0.4, vk_percent = 6, vkr_percent = 1.2
    # (optional pfe_kw = 0, i0_percent = 0); parallel = 1

    [[line]]
    name = "L1"
    from_bus = "LV0"
    to_bus = "LV1"
    length_m = 120                   # or length_km
    std_type = "NAYY 4x150 SE"       # or all of: r_ohm_per_km, x_ohm_per_km, max_i_a (ampacity, A)
    # (optional c_nf_per_km = 0); parallel = 1

    [[connection]]
    board = "b01"
    bus = "LV1"                      # an LV bus (below 1 kV)
    phase = "L1"                     # optional: L1, L2, L3; absent means three-phase
    import_limit_w = 13800           # optional, W
    export_limit_w = 4600            # optional, W
    peak_load_w = 8000               # optional, W: seeds the random schedule generator
    pv_w = 6000                      # optional, W: installed PV

Rules: names are unique per kind; every bus is reached from the slack through lines and
transformers; numbers are positive where a rating or a length is meant (ampacity, kVA, kV,
length), resistance and reactance are not negative and not both zero, vkr_percent < vk_percent,
a transformer's HV bus has the higher nominal voltage. Connection buses are the buses that
boards connect to, in bus order.
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from coordinator.delivery.errors import (
    GridDefinitionError,
    GridFileError,
    InvalidParameterError,
    UnknownBusError,
)
from coordinator.delivery.grid import (
    PHASES,
    Bus,
    Connection,
    GridModel,
    Limits,
    Line,
    Transformer,
    check_connections,
)

_TOP = {"name", "limits", "slack", "bus", "line", "transformer", "connection"}
_LIMITS = {"v_min_pu", "v_max_pu", "line_max_percent", "trafo_max_percent"}
_SLACK = {"bus", "vm_pu"}
_BUS = {"name", "vn_kv"}
_LINE = {
    "name", "from_bus", "to_bus", "length_m", "length_km", "std_type",
    "r_ohm_per_km", "x_ohm_per_km", "max_i_a", "c_nf_per_km", "parallel",
}  # fmt: skip
_LINE_PARAMS = ("r_ohm_per_km", "x_ohm_per_km", "max_i_a")
_TRAFO = {
    "name", "hv_bus", "lv_bus", "std_type", "sn_kva", "vn_hv_kv", "vn_lv_kv",
    "vk_percent", "vkr_percent", "pfe_kw", "i0_percent", "parallel",
}  # fmt: skip
_TRAFO_PARAMS = ("sn_kva", "vn_hv_kv", "vn_lv_kv", "vk_percent", "vkr_percent")
_CONN = {"board", "bus", "phase", "import_limit_w", "export_limit_w", "peak_load_w", "pv_w"}


def load_toml(path: str | Path) -> GridModel:
    """Load a pilot grid from a TOML file (see the module docstring for the format)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise GridFileError(f"{p}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise GridFileError(f"{p}: not UTF-8 text") from None
    return parse_toml(text, source=str(p))


def parse_toml(text: str, *, source: str = "<toml>") -> GridModel:
    """Parse a pilot grid from TOML text; ``source`` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise GridFileError(f"{source}: not valid TOML: {e}") from None
    return _Parser(source).grid(data)


class _Parser:
    def __init__(self, source: str) -> None:
        self.src = source

    def fail(
        self, where: str, msg: str, cls: type[GridDefinitionError] = GridDefinitionError
    ) -> GridDefinitionError:
        return cls(f"{self.src}: {where}: {msg}")

    def keys(self, t: Mapping[str, Any], allowed: set[str], where: str) -> None:
        extra = sorted(set(t) - allowed)
        if extra:
            raise self.fail(where, f"unknown key {extra[0]!r} (allowed: {', '.join(sorted(allowed))})")

    def tables(self, data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
        v = data.get(key, [])
        if isinstance(v, dict):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            raise self.fail(key, f"must be a table or an array of tables ([[{key}]])")
        return v

    def text(self, t: Mapping[str, Any], key: str, where: str) -> str:
        v = self.opt_text(t, key, where)
        if v is None:
            raise self.fail(where, f"{key} is required")
        return v

    def opt_text(self, t: Mapping[str, Any], key: str, where: str) -> str | None:
        v = t.get(key)
        if v is None:
            return None
        if not isinstance(v, str) or not v.strip():
            raise self.fail(where, f"{key} must be a non-empty string, got {v!r}")
        return v.strip()

    def number(
        self,
        t: Mapping[str, Any],
        key: str,
        where: str,
        *,
        default: float | None = None,
        low: float | None = None,
        above: float | None = None,
    ) -> float:
        v = t.get(key, default)
        if v is None:
            raise self.fail(where, f"{key} is required")
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise self.fail(where, f"{key} must be a number, got {v!r}")
        x = float(v)
        if above is not None and not x > above:
            raise self.fail(where, f"{key} must be greater than {above:g}, got {v}", InvalidParameterError)
        if low is not None and not x >= low:
            raise self.fail(where, f"{key} cannot be below {low:g}, got {v}", InvalidParameterError)
        return x

    def integer(self, t: Mapping[str, Any], key: str, where: str, *, default: int, low: int) -> int:
        v = self.opt_integer(t, key, where, low=low)
        return default if v is None else v

    def opt_integer(self, t: Mapping[str, Any], key: str, where: str, *, low: int) -> int | None:
        v = t.get(key)
        if v is None:
            return None
        if type(v) is not int:
            raise self.fail(where, f"{key} must be an integer, got {v!r}")
        if v < low:
            raise self.fail(where, f"{key} cannot be below {low}, got {v}", InvalidParameterError)
        return v

    def bus_ref(self, t: Mapping[str, Any], key: str, where: str, buses: Mapping[str, Bus]) -> str:
        name = self.text(t, key, where)
        if name not in buses:
            known = ", ".join(list(buses)[:8]) + (", ..." if len(buses) > 8 else "")
            raise self.fail(
                where, f"{key} {name!r} is not a bus of this grid (buses: {known})", UnknownBusError
            )
        return name

    # --- the grid ------------------------------------------------------------------------------

    def grid(self, data: Mapping[str, Any]) -> GridModel:
        self.keys(data, _TOP, "top level")
        name = self.opt_text(data, "name", "top level") or Path(self.src).stem or "pilot"
        limits = self.limits(data.get("limits", {}))
        buses: dict[str, Bus] = {}
        for i, t in enumerate(self.tables(data, "bus")):
            where = f"bus #{i + 1}"
            self.keys(t, _BUS, where)
            n = self.text(t, "name", where)
            if n in buses:
                raise self.fail(f"bus {n!r}", "defined twice")
            buses[n] = Bus(n, self.number(t, "vn_kv", f"bus {n!r}", above=0.0))
        if not buses:
            raise self.fail("top level", "no [[bus]] defined")
        trafos = [self.transformer(t, i, buses) for i, t in enumerate(self.tables(data, "transformer"))]
        lines = [self.line(t, i, buses) for i, t in enumerate(self.tables(data, "line"))]
        for kind, items in (("transformer", [x[0] for x in trafos]), ("line", [x[0] for x in lines])):
            seen: set[str] = set()
            for x in items:
                if x.name in seen:
                    raise self.fail(f"{kind} {x.name!r}", "defined twice")
                seen.add(x.name)
        slack_t = data.get("slack", {})
        if not isinstance(slack_t, dict):
            raise self.fail("slack", "must be a table")
        self.keys(slack_t, _SLACK, "slack")
        if "bus" in slack_t:
            slack = self.bus_ref(slack_t, "bus", "slack", buses)
        elif trafos:
            slack = trafos[0][0].hv_bus
        else:
            raise self.fail("slack", "no transformer, so [slack] bus = ... is required")
        vm = self.number(slack_t, "vm_pu", "slack", default=1.0, above=0.5)
        if vm > 1.5:
            raise self.fail("slack", f"vm_pu must be at most 1.5, got {vm}", InvalidParameterError)
        self.connected(buses, slack, [x[0] for x in lines], [x[0] for x in trafos])
        conns, peak, pv = self.connections(self.tables(data, "connection"), buses)
        order = {b: i for i, b in enumerate(buses)}
        conn_buses = tuple(sorted({c.bus for c in conns}, key=order.__getitem__))
        grid = GridModel(
            name=name,
            buses=tuple(buses.values()),
            lines=tuple(x[0] for x in lines),
            transformers=tuple(x[0] for x in trafos),
            connection_buses=conn_buses,
            connections=tuple(conns),
            limits=limits,
            peak_load_w=MappingProxyType(peak),
            pv_w=MappingProxyType(pv),
        )
        try:
            check_connections(grid)
        except GridDefinitionError as e:
            raise type(e)(f"{self.src}: {e}") from None
        net, idx, lidx, tidx = self.build(name, buses, slack, vm, lines, trafos)
        return replace(
            grid,
            net=net,
            bus_index=MappingProxyType(idx),
            line_index=MappingProxyType(lidx),
            trafo_index=MappingProxyType(tidx),
        )

    def limits(self, t: Any) -> Limits:
        if not isinstance(t, dict):
            raise self.fail("limits", "must be a table")
        self.keys(t, _LIMITS, "limits")
        d = Limits()
        try:
            return Limits(
                v_min_pu=self.number(t, "v_min_pu", "limits", default=d.v_min_pu),
                v_max_pu=self.number(t, "v_max_pu", "limits", default=d.v_max_pu),
                line_max_percent=self.number(t, "line_max_percent", "limits", default=d.line_max_percent),
                trafo_max_percent=self.number(t, "trafo_max_percent", "limits", default=d.trafo_max_percent),
            )
        except InvalidParameterError as e:
            raise InvalidParameterError(f"{self.src}: {e}") from None

    def line(self, t: Mapping[str, Any], i: int, buses: Mapping[str, Bus]) -> tuple[Line, dict[str, Any]]:
        where = f"line #{i + 1}"
        self.keys(t, _LINE, where)
        name = self.text(t, "name", where)
        where = f"line {name!r}"
        f = self.bus_ref(t, "from_bus", where, buses)
        to = self.bus_ref(t, "to_bus", where, buses)
        if f == to:
            raise self.fail(where, f"from_bus and to_bus are both {f!r}", InvalidParameterError)
        if ("length_m" in t) == ("length_km" in t):
            raise self.fail(where, "give exactly one of length_m and length_km")
        km = (
            self.number(t, "length_m", where, above=0.0) / 1000
            if "length_m" in t
            else self.number(t, "length_km", where, above=0.0)
        )
        parallel = self.integer(t, "parallel", where, default=1, low=1)
        std = self.opt_text(t, "std_type", where)
        given = [k for k in (*_LINE_PARAMS, "c_nf_per_km") if k in t]
        if std is not None:
            if given:
                raise self.fail(where, f"give std_type or {', '.join(_LINE_PARAMS)}, not both ({given[0]})")
            data = _std_type(std, "line")
            if data is None:
                raise self.fail(
                    where, f"std_type {std!r} is not a pandapower line type", InvalidParameterError
                )
            r, x, imax = (
                float(data["r_ohm_per_km"]),
                float(data["x_ohm_per_km"]),
                float(data["max_i_ka"]) * 1000,
            )
            build: dict[str, Any] = {"std_type": std}
        else:
            missing = [k for k in _LINE_PARAMS if k not in t]
            if missing:
                raise self.fail(where, f"needs std_type or {', '.join(_LINE_PARAMS)} (missing {missing[0]})")
            r = self.number(t, "r_ohm_per_km", where, low=0.0)
            x = self.number(t, "x_ohm_per_km", where, low=0.0)
            if r == 0 and x == 0:
                raise self.fail(
                    where, "r_ohm_per_km and x_ohm_per_km cannot both be 0", InvalidParameterError
                )
            imax = self.number(t, "max_i_a", where, above=0.0)
            c = self.number(t, "c_nf_per_km", where, default=0.0, low=0.0)
            build = {"r_ohm_per_km": r, "x_ohm_per_km": x, "c_nf_per_km": c, "max_i_ka": imax / 1000}
        return Line(name, f, to, km, r, x, imax, parallel), build

    def transformer(
        self, t: Mapping[str, Any], i: int, buses: Mapping[str, Bus]
    ) -> tuple[Transformer, dict[str, Any]]:
        where = f"transformer #{i + 1}"
        self.keys(t, _TRAFO, where)
        name = self.text(t, "name", where)
        where = f"transformer {name!r}"
        hv = self.bus_ref(t, "hv_bus", where, buses)
        lv = self.bus_ref(t, "lv_bus", where, buses)
        if not buses[hv].vn_kv > buses[lv].vn_kv:
            raise self.fail(
                where,
                f"hv_bus {hv!r} ({buses[hv].vn_kv} kV) must have a higher voltage than lv_bus {lv!r} "
                f"({buses[lv].vn_kv} kV)",
                InvalidParameterError,
            )
        parallel = self.integer(t, "parallel", where, default=1, low=1)
        std = self.opt_text(t, "std_type", where)
        given = [k for k in (*_TRAFO_PARAMS, "pfe_kw", "i0_percent") if k in t]
        if std is not None:
            if given:
                raise self.fail(where, f"give std_type or {', '.join(_TRAFO_PARAMS)}, not both ({given[0]})")
            data = _std_type(std, "trafo")
            if data is None:
                raise self.fail(
                    where, f"std_type {std!r} is not a pandapower transformer type", InvalidParameterError
                )
            sn_kva = float(data["sn_mva"]) * 1000
            build: dict[str, Any] = {"std_type": std}
        else:
            missing = [k for k in _TRAFO_PARAMS if k not in t]
            if missing:
                raise self.fail(where, f"needs std_type or {', '.join(_TRAFO_PARAMS)} (missing {missing[0]})")
            sn_kva = self.number(t, "sn_kva", where, above=0.0)
            vk = self.number(t, "vk_percent", where, above=0.0)
            vkr = self.number(t, "vkr_percent", where, low=0.0)
            if not vkr < vk:
                raise self.fail(
                    where, f"vkr_percent ({vkr}) must be below vk_percent ({vk})", InvalidParameterError
                )
            build = {
                "sn_mva": sn_kva / 1000,
                "vn_hv_kv": self.number(t, "vn_hv_kv", where, above=0.0),
                "vn_lv_kv": self.number(t, "vn_lv_kv", where, above=0.0),
                "vk_percent": vk,
                "vkr_percent": vkr,
                "pfe_kw": self.number(t, "pfe_kw", where, default=0.0, low=0.0),
                "i0_percent": self.number(t, "i0_percent", where, default=0.0, low=0.0),
            }
        return Transformer(name, hv, lv, sn_kva, parallel), build

    def connections(
        self, tables: list[Mapping[str, Any]], buses: Mapping[str, Bus]
    ) -> tuple[list[Connection], dict[str, int], dict[str, int]]:
        conns: list[Connection] = []
        peak: dict[str, int] = {}
        pv: dict[str, int] = {}
        for i, t in enumerate(tables):
            where = f"connection #{i + 1}"
            self.keys(t, _CONN, where)
            board = self.text(t, "board", where)
            where = f"connection {board!r}"
            bus = self.bus_ref(t, "bus", where, buses)
            phase = self.opt_text(t, "phase", where)
            if phase is not None and phase not in PHASES:
                raise self.fail(
                    where, f"phase must be one of {', '.join(PHASES)}, got {phase!r}", InvalidParameterError
                )
            imp = self.opt_integer(t, "import_limit_w", where, low=0)
            exp = self.opt_integer(t, "export_limit_w", where, low=0)
            peak[bus] = peak.get(bus, 0) + self.integer(t, "peak_load_w", where, default=0, low=0)
            pv[bus] = pv.get(bus, 0) + self.integer(t, "pv_w", where, default=0, low=0)
            conns.append(Connection(board, bus, phase, imp, exp))
        if not conns:
            raise self.fail("top level", "no [[connection]] defined: no board is connected")
        return conns, peak, pv

    def connected(
        self, buses: Mapping[str, Bus], slack: str, lines: list[Line], trafos: list[Transformer]
    ) -> None:
        adj: dict[str, set[str]] = {b: set() for b in buses}
        for a, b in [(x.from_bus, x.to_bus) for x in lines] + [(x.hv_bus, x.lv_bus) for x in trafos]:
            adj[a].add(b)
            adj[b].add(a)
        seen = {slack}
        todo = [slack]
        while todo:
            for nb in adj[todo.pop()]:
                if nb not in seen:
                    seen.add(nb)
                    todo.append(nb)
        cut = [b for b in buses if b not in seen]
        if cut:
            raise self.fail("topology", f"not connected to the slack bus {slack!r}: {', '.join(cut)}")

    def build(
        self,
        name: str,
        buses: Mapping[str, Bus],
        slack: str,
        vm: float,
        lines: list[tuple[Line, dict[str, Any]]],
        trafos: list[tuple[Transformer, dict[str, Any]]],
    ) -> tuple[Any, dict[str, int], dict[str, int], dict[str, int]]:
        import pandapower as pp

        net = pp.create_empty_network(name=name)
        idx = {b.name: int(pp.create_bus(net, vn_kv=b.vn_kv, name=b.name)) for b in buses.values()}
        pp.create_ext_grid(net, idx[slack], vm_pu=vm, name="slack")
        lidx: dict[str, int] = {}
        for ln, kw in lines:
            args = (net, idx[ln.from_bus], idx[ln.to_bus], ln.length_km)
            if "std_type" in kw:
                i = pp.create_line(*args, std_type=kw["std_type"], name=ln.name, parallel=ln.parallel)
            else:
                i = pp.create_line_from_parameters(*args, name=ln.name, parallel=ln.parallel, **kw)
            lidx[ln.name] = int(i)
        tidx: dict[str, int] = {}
        for tr, kw in trafos:
            if "std_type" in kw:
                i = pp.create_transformer(
                    net,
                    idx[tr.hv_bus],
                    idx[tr.lv_bus],
                    std_type=kw["std_type"],
                    name=tr.name,
                    parallel=tr.parallel,
                )
            else:
                i = pp.create_transformer_from_parameters(
                    net, idx[tr.hv_bus], idx[tr.lv_bus], name=tr.name, parallel=tr.parallel, **kw
                )
            tidx[tr.name] = int(i)
        return net, idx, lidx, tidx


@functools.cache
def _std_types() -> Any:
    import pandapower as pp

    return pp.create_empty_network()  # carries pandapower's standard type library


def _std_type(name: str, element: str) -> dict[str, Any] | None:
    import pandapower as pp

    net = _std_types()
    if not pp.std_type_exists(net, name, element=element):
        return None
    return dict(pp.load_std_type(net, name, element=element))
