"""Grid screen: a fast sensitivity model of the grid for every interval, confirmed by AC power flow.

Method (computed once per grid, in :class:`Screen`'s constructor):

1. One pandapower AC power flow at no load gives the network's bus admittance matrix Y and the
   no-load voltages w (the slack's voltage carried through the transformers).
2. With the slack buses s fixed and the other buses L, Y_LL V_L + Y_Ls V_s = conj(S / V_L). For the
   connection buses c this gives V = w + Z conj(S_c / V_c), where Z = Y_LL^-1 restricted to the
   columns of the connection buses (one sparse LU, one solve per connection bus). Scaled per W,
   the sensitivity of the complex voltage of every bus to 1 W injected at connection bus c is
   K[:, c] = Z[:, c] / conj(w_c): the derivative of the AC power flow at no load.
3. Branch currents are linear in the voltages: I_from = Y_f V, I_to = Y_t V, so their
   sensitivities are Y_f K and Y_t K (complex). Predicting complex currents and taking the
   magnitude afterwards keeps the model right when a schedule reverses a line's flow (PV export
   against load), where a linearised magnitude would be wrong.

Per schedule (W per connection bus, + export): V = w + K p and I = I_0 + G p, then |V| (pu) and
loading = |I| / rated current * 100, all matrix products (numpy). ``corrections`` (default 1)
re-evaluates the injected current at the predicted voltage once (V = w + Z p / conj(V_c)), one
more matrix product, which removes most of the linearisation error (losses, voltage-dependent
current); ``corrections=0`` is the plain linear sensitivity model.

Flags: a value beyond its limit is a "violation", one within the margin of its limit is
"borderline", and a schedule that moves a connection bus's voltage more than RANGE_PU from no load
is "out_of_range" (beyond where the model was measured). Any flag sends the schedule to
pandapower's AC power flow (runpp), whose values decide; a power flow that does not converge is a
``no_solution`` violation. Margins default to a bit more than the screen's worst error measured
on the benchmark grids (see MARGINS and tests/delivery): with them no schedule that violates a
limit in AC passes the screen, and within 0.90-1.10 pu and 150 % loading every single violating
voltage or loading is flagged itself.

Reactive power at the connections is zero; the network is balanced (positive sequence). The
sensitivities read pandapower's internal matrices after runpp (``net._ppc["internal"]``: Ybus,
Yf, Yt, V, branch_is; ``net._pd2ppc_lookups``); a test checks them against finite differences of
runpp, so a pandapower upgrade that changes them fails loudly.
"""

from __future__ import annotations

import copy
import importlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from coordinator.delivery.errors import GridDefinitionError, PowerFlowError, ScheduleError
from coordinator.delivery.grid import GridModel
from coordinator.delivery.redispatch import Constraint

F64 = NDArray[np.float64]
C128 = NDArray[np.complex128]

# (voltage margin pu, loading margin percentage points) per number of corrections. Measured
# worst screen error against runpp over 2,400 random schedules on 8 benchmark grids (CIGRE LV,
# Kerber Landnetz cable/overhead, Dorfnetz, SimBench rural1 (scenarios 0 and 2), semiurb4 and
# urban6), counting schedules whose AC state stays within 0.90-1.10 pu and 150 % loading:
# corrections=1: 0.0014 pu and 1.26 pp; corrections=0: 0.0147 pu and 9.2 pp. The margins are
# about twice (voltage) and 1.6 times (loading) that. Schedules beyond that envelope are far past a
# limit and flagged anyway.
MARGINS: dict[int, tuple[float, float]] = {0: (0.02, 12.0), 1: (0.003, 2.0)}

VOLTAGE_HIGH = "voltage_high"
VOLTAGE_LOW = "voltage_low"
LINE = "line"
TRAFO = "trafo"
IMPORT = "import"
EXPORT = "export"
NO_SOLUTION = "no_solution"
OUT_OF_RANGE = "out_of_range"
# A schedule that moves a connection bus's complex voltage this far (pu) from no load is outside
# the range where the sensitivity model was measured (every limit is nearer than that), or makes
# the correction step diverge: it is flagged for AC whatever its predicted values.
RANGE_PU = 0.15


@dataclass(frozen=True)
class GridState:
    """Voltages and loadings for one schedule (predicted by the screen or from AC power flow)."""

    vm_pu: F64  # per Screen.v_buses
    line_loading: F64  # percent, per Screen.lines
    trafo_loading: F64  # percent, per Screen.transformers
    deviation_pu: F64 | None = None  # screen only: |V - V no load| per connection bus (validity check)


@dataclass(frozen=True)
class Finding:
    """What the screen flags: a predicted value beyond ("violation") or near ("borderline") a limit."""

    kind: str  # voltage_high | voltage_low | line | trafo
    where: str  # bus, line or transformer name
    predicted: float  # pu for voltages, percent for loadings
    limit: float
    status: str  # "violation" | "borderline" | "out_of_range"

    @property
    def unit(self) -> str:
        return "pu" if self.kind in (VOLTAGE_HIGH, VOLTAGE_LOW, OUT_OF_RANGE) else "%"


@dataclass(frozen=True)
class Violation:
    """A broken limit. ``value`` is the AC power flow's when it ran, else the screen's prediction."""

    kind: str  # voltage_high | voltage_low | line | trafo | import | export | no_solution
    where: str  # bus, line, transformer or board (import/export), "grid" for no_solution
    value: float  # pu, percent or W (see unit)
    limit: float
    unit: str  # "pu" | "%" | "W"
    confirmed: bool  # by AC power flow (or, for import/export, by the schedule itself)
    predicted: float | None = None  # the screen's value; None where the screen has none
    screened: bool = True  # the screen flagged it (False would be a miss: the margin was too small)


@dataclass(frozen=True)
class CheckResult:
    violations: tuple[Violation, ...]
    findings: tuple[Finding, ...]  # everything the screen flagged
    ac_checked: bool  # pandapower AC power flow ran for this schedule
    false_alarms: tuple[Finding, ...] = ()  # flagged as violations by the screen, within limits in AC
    ac_state: GridState | None = None  # the AC power flow's voltages and loadings, when it ran

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def missed(self) -> tuple[Violation, ...]:
        """AC violations that the screen did not flag (should be empty with the default margins)."""
        return tuple(v for v in self.violations if not v.screened)


def _pp() -> Any:
    import pandapower

    return pandapower


class Screen:
    """The sensitivity screen of one grid, and the AC power flow that confirms it.

    ``buses`` are the connection buses (a schedule's keys), ``v_buses`` the buses whose voltage is
    checked, ``lines`` and ``transformers`` the branches whose loading is checked; arrays in a
    GridState follow these orders. Building a screen costs one runpp and one sparse LU (about
    35-50 ms on the benchmark grids). Not thread-safe: :meth:`ac` reuses one pandapower net, so
    run checks of one screen one at a time (e.g. in one worker thread off the event loop).
    """

    def __init__(
        self,
        grid: GridModel,
        *,
        corrections: int = 1,
        margin_v_pu: float | None = None,
        margin_loading_pp: float | None = None,
    ) -> None:
        if corrections not in MARGINS:
            raise ValueError(f"corrections must be one of {sorted(MARGINS)}, got {corrections}")
        dv, dl = MARGINS[corrections]
        self.grid = grid
        self.corrections = corrections
        self.margin_v_pu = dv if margin_v_pu is None else margin_v_pu
        self.margin_loading_pp = dl if margin_loading_pp is None else margin_loading_pp
        if self.margin_v_pu < 0 or self.margin_loading_pp < 0:
            raise ValueError("margins cannot be negative")
        self.buses: tuple[str, ...] = grid.connection_buses
        self._col = {b: i for i, b in enumerate(self.buses)}
        self.v_buses: tuple[str, ...] = grid.lv_buses
        self.lines: tuple[str, ...] = tuple(ln.name for ln in grid.lines)
        self.transformers: tuple[str, ...] = tuple(t.name for t in grid.transformers)
        pp = _pp()
        net = copy.deepcopy(grid.net)
        conn_idx = [grid.bus_index[b] for b in self.buses]
        pp.create_loads(net, conn_idx, p_mw=0.0, q_mvar=0.0, name=[f"connection {b}" for b in self.buses])
        self._net = net
        self._run(net)  # no load: the base point
        lv_idx = [grid.bus_index[b] for b in self.v_buses]
        vm0 = net.res_bus.vm_pu.loc[lv_idx].to_numpy(dtype=float)
        if np.isnan(vm0).any():
            cut = [b for b, v in zip(self.v_buses, vm0, strict=True) if math.isnan(v)]
            raise GridDefinitionError(
                f"grid {grid.name!r}: buses not connected to the slack: {', '.join(cut[:10])}"
            )
        self._build(net, conn_idx, lv_idx)

    def with_connections(self, grid: GridModel) -> Screen:
        """This screen for ``grid``: the same network with other boards connected or other limits.

        Shares the sensitivities and the power-flow net (so the same one-at-a-time rule holds)."""
        if grid.connection_buses != self.buses or grid.lv_buses != self.v_buses:
            raise GridDefinitionError(f"grid {grid.name!r} is not the network this screen was built for")
        other = copy.copy(self)
        other.grid = grid
        return other

    # --- sensitivities -------------------------------------------------------------------------

    def _build(self, net: Any, conn_idx: list[int], lv_idx: list[int]) -> None:
        splu = importlib.import_module("scipy.sparse.linalg").splu  # scipy has no type stubs here
        internal = net._ppc["internal"]
        ybus = internal["Ybus"].tocsr()
        v0: C128 = np.asarray(internal["V"], dtype=np.complex128)
        ref = np.asarray(internal["ref"], dtype=np.int64)
        if len(internal["pv"]):
            raise GridDefinitionError(f"grid {self.grid.name!r}: voltage-controlled buses are not supported")
        base_w = float(internal["baseMVA"]) * 1e6
        nb = len(v0)
        others = np.setdiff1d(np.arange(nb), ref)
        pos = np.full(nb, -1, dtype=np.int64)
        pos[others] = np.arange(len(others))
        lookup = np.asarray(net._pd2ppc_lookups["bus"], dtype=np.int64)
        crow = lookup[np.asarray(conn_idx, dtype=np.int64)]
        if (pos[crow] < 0).any():
            raise GridDefinitionError(f"grid {self.grid.name!r}: a connection bus is the slack bus")
        lu = splu(ybus[others][:, others].tocsc())
        unit = np.zeros((len(others), len(crow)), dtype=np.complex128)
        unit[pos[crow], np.arange(len(crow))] = 1.0
        z = np.zeros((nb, len(crow)), dtype=np.complex128)
        z[others] = lu.solve(unit)
        z /= base_w  # V (pu) per (W / V_c (pu)) injected at each connection bus
        w = v0  # at no load the AC solution is the no-load voltage w
        vrow = lookup[np.asarray(lv_idx, dtype=np.int64)]
        self._w_c: C128 = w[crow]
        self._z_c: C128 = z[crow]
        self._w_v: C128 = w[vrow]
        self._z_v: C128 = z[vrow]
        self._sens_v: C128 = z[vrow] / np.conj(w[crow])[None, :]  # dV/dP at no load, pu per W

        branch_is = np.asarray(internal["branch_is"], dtype=bool)
        internal_row = np.cumsum(branch_is) - 1
        yf = internal["Yf"].tocsr()
        yt = internal["Yt"].tocsr()
        sqrt3 = math.sqrt(3.0)
        vn = net.bus.vn_kv
        blocks = []
        for table, names, index in (
            ("line", self.lines, self.grid.line_index),
            ("trafo", self.transformers, self.grid.trafo_index),
        ):
            start, _ = net._pd2ppc_lookups["branch"].get(table, (0, 0))
            df = net[table]
            positions = [df.index.get_loc(index[n]) for n in names]
            rows = start + np.asarray(positions, dtype=np.int64)
            if len(rows) and not branch_is[rows].all():
                raise GridDefinitionError(
                    f"grid {self.grid.name!r}: a {table} is out of service in the power flow"
                )
            irow = internal_row[rows] if len(rows) else rows
            af = yf[irow].toarray() if len(rows) else np.zeros((0, nb), dtype=np.complex128)
            at = yt[irow].toarray() if len(rows) else np.zeros((0, nb), dtype=np.complex128)
            sel = df.loc[[index[n] for n in names]]
            if table == "line":
                f_kv = vn.loc[sel.from_bus].to_numpy(dtype=float)
                t_kv = vn.loc[sel.to_bus].to_numpy(dtype=float)
                rated_ka = (sel.max_i_ka * sel.df * sel.parallel).to_numpy(dtype=float)
                sf = base_w / 1e6 / (sqrt3 * f_kv) / rated_ka * 100.0
                st = base_w / 1e6 / (sqrt3 * t_kv) / rated_ka * 100.0
            else:
                h_kv = vn.loc[sel.hv_bus].to_numpy(dtype=float)
                l_kv = vn.loc[sel.lv_bus].to_numpy(dtype=float)
                rating = (sel.sn_mva * sel.parallel * sel.df).to_numpy(dtype=float)
                sf = base_w / 1e6 * sel.vn_hv_kv.to_numpy(dtype=float) / (h_kv * rating) * 100.0
                st = base_w / 1e6 * sel.vn_lv_kv.to_numpy(dtype=float) / (l_kv * rating) * 100.0
            blocks.append((af @ w, af @ z, at @ w, at @ z, sf, st))
        self._branches = blocks

    @property
    def sensitivity_v(self) -> F64:
        """d|V| / dP at no load: pu per W, rows v_buses, columns buses (connection buses)."""
        return np.real(np.conj(self._w_v)[:, None] * self._sens_v) / np.abs(self._w_v)[:, None]

    # --- prediction ----------------------------------------------------------------------------

    def vector(self, schedule: Mapping[str, int]) -> F64:
        """A schedule (W per connection bus, + export) as a vector in ``buses`` order; missing buses are 0."""
        p = np.zeros(len(self.buses))
        for bus, w in schedule.items():
            col = self._col.get(bus)
            if col is None:
                raise ScheduleError(f"grid {self.grid.name!r}: {bus!r} is not a connection bus")
            if type(w) is not int:
                raise ScheduleError(f"bus {bus!r}: power must be an integer in W, got {w!r}")
            p[col] = w
        return p

    def _currents_in(self, p: F64) -> C128:
        """Injected current (per W scaling) at the connection buses: p / conj(V_c), iterated."""
        wc = np.conj(self._w_c)
        u: C128 = (p / wc).astype(np.complex128)
        for _ in range(self.corrections):
            vc = self._w_c + u @ self._z_c.T
            u = (p / np.conj(vc)).astype(np.complex128)
        return u

    def predict_many(self, schedules: F64) -> GridState:
        """Predict many schedules at once: rows are schedules (W per connection bus)."""
        p = np.atleast_2d(np.asarray(schedules, dtype=float))
        u = self._currents_in(p)
        vm = np.abs(self._w_v + u @ self._z_v.T)
        loads = []
        for if0, gf, it0, gt, sf, st in self._branches:
            loads.append(np.maximum(np.abs(if0 + u @ gf.T) * sf, np.abs(it0 + u @ gt.T) * st))
        return GridState(vm, loads[0], loads[1], np.abs(u @ self._z_c.T))

    def predict(self, schedule: Mapping[str, int]) -> GridState:
        return self._one(self.predict_many(self.vector(schedule)[None, :]))

    @staticmethod
    def _one(s: GridState) -> GridState:
        dev = None if s.deviation_pu is None else s.deviation_pu[0]
        return GridState(s.vm_pu[0], s.line_loading[0], s.trafo_loading[0], dev)

    def flags(self, state: GridState, *, margins: bool = True) -> list[Finding]:
        """Findings for one state: beyond a limit, or (with margins) within the margin of one."""
        lim = self.grid.limits
        mv = self.margin_v_pu if margins else 0.0
        ml = self.margin_loading_pp if margins else 0.0
        out: list[Finding] = []
        if state.deviation_pu is not None:  # NaN (a diverging correction) counts as out of range
            for i in map(int, np.flatnonzero(~(state.deviation_pu <= RANGE_PU))):
                out.append(
                    Finding(OUT_OF_RANGE, self.buses[i], float(state.deviation_pu[i]), RANGE_PU, OUT_OF_RANGE)
                )
        checks: list[tuple[str, Sequence[str], F64, float, float, float]] = [
            (VOLTAGE_HIGH, self.v_buses, state.vm_pu, lim.v_max_pu, mv, 1.0),
            (VOLTAGE_LOW, self.v_buses, state.vm_pu, lim.v_min_pu, mv, -1.0),
            (LINE, self.lines, state.line_loading, lim.line_max_percent, ml, 1.0),
            (TRAFO, self.transformers, state.trafo_loading, lim.trafo_max_percent, ml, 1.0),
        ]
        for kind, names, values, limit, margin, sign in checks:
            excess = sign * (values - limit)  # > 0: beyond the limit
            for i in map(int, np.flatnonzero(excess >= -margin)):
                status = "violation" if excess[i] > 0 else "borderline"
                out.append(Finding(kind, names[i], float(values[i]), limit, status))
        return out

    def screen(self, schedule: Mapping[str, int]) -> list[Finding]:
        return self.flags(self.predict(schedule))

    # --- AC power flow -------------------------------------------------------------------------

    def _run(self, net: Any) -> None:
        pp = _pp()
        try:
            pp.runpp(net, numba=False, calculate_voltage_angles=True)
        except pp.LoadflowNotConverged:
            raise PowerFlowError(f"grid {self.grid.name!r}: AC power flow did not converge") from None

    def ac(self, schedule: Mapping[str, int]) -> GridState:
        """pandapower AC power flow (runpp) of a schedule: raises PowerFlowError if it does not converge."""
        return self.ac_vector(self.vector(schedule))

    def ac_vector(self, p: F64) -> GridState:
        net = self._net
        net.load["p_mw"] = -np.asarray(p, dtype=float) / 1e6
        self._run(net)
        g = self.grid
        vm = net.res_bus.vm_pu.loc[[g.bus_index[b] for b in self.v_buses]].to_numpy(dtype=float)
        ll = net.res_line.loading_percent.loc[[g.line_index[n] for n in self.lines]].to_numpy(dtype=float)
        tl = net.res_trafo.loading_percent.loc[[g.trafo_index[n] for n in self.transformers]].to_numpy(
            dtype=float
        )
        return GridState(vm, ll, tl)

    # --- check ---------------------------------------------------------------------------------

    def check(self, schedule: Mapping[str, int], *, confirm: bool = True) -> CheckResult:
        """Screen a schedule (W per connection bus, + export); confirm flagged ones with AC power flow."""
        p = self.vector(schedule)
        pred = self._one(self.predict_many(p[None, :]))
        findings = tuple(self.flags(pred))
        if not findings:
            return CheckResult((), (), False)
        if not confirm:  # the screen's word only: out-of-range counts as a violation, to be safe
            vs = tuple(
                Violation(f.kind, f.where, f.predicted, f.limit, f.unit, False, f.predicted)
                for f in findings
                if f.status != "borderline"
            )
            return CheckResult(vs, findings, False)
        try:
            state = self.ac_vector(p)
        except PowerFlowError:
            nos = Violation(NO_SOLUTION, "grid", math.nan, math.nan, "", True, None, True)
            return CheckResult((nos,), findings, True)
        predicted = self._values(pred)
        flagged = {(f.kind, f.where) for f in findings}
        violations = tuple(
            Violation(
                f.kind,
                f.where,
                f.predicted,
                f.limit,
                f.unit,
                True,
                predicted[(f.kind, f.where)],
                (f.kind, f.where) in flagged,
            )
            for f in self.flags(state, margins=False)
        )
        seen = {(v.kind, v.where) for v in violations}
        false_alarms = tuple(f for f in findings if f.status == "violation" and (f.kind, f.where) not in seen)
        return CheckResult(violations, findings, True, false_alarms, state)

    def check_boards(self, board_schedule: Mapping[str, int], *, confirm: bool = True) -> CheckResult:
        """Check a schedule per board: its connection limits exactly, then the grid via :meth:`check`."""
        own: list[Violation] = []
        for c in self.grid.connections:
            w = board_schedule.get(c.board, 0)
            if c.import_limit_w is not None and type(w) is int and -w > c.import_limit_w:
                own.append(Violation(IMPORT, c.board, float(-w), float(c.import_limit_w), "W", True))
            if c.export_limit_w is not None and type(w) is int and w > c.export_limit_w:
                own.append(Violation(EXPORT, c.board, float(w), float(c.export_limit_w), "W", True))
        r = self.check(self.grid.bus_schedule(board_schedule), confirm=confirm)
        return CheckResult(tuple(own) + r.violations, r.findings, r.ac_checked, r.false_alarms, r.ac_state)

    def _values(self, s: GridState) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        for i, b in enumerate(self.v_buses):
            out[(VOLTAGE_HIGH, b)] = out[(VOLTAGE_LOW, b)] = float(s.vm_pu[i])
        for i, n in enumerate(self.lines):
            out[(LINE, n)] = float(s.line_loading[i])
        for i, n in enumerate(self.transformers):
            out[(TRAFO, n)] = float(s.trafo_loading[i])
        return out

    # --- for redispatch ------------------------------------------------------------------------

    def constraints(
        self,
        schedule: Mapping[str, int],
        *,
        window_v_pu: float = 0.03,
        window_loading_pp: float = 30.0,
        tighten: bool = True,
    ) -> list[Constraint]:
        """Constraints for :func:`~coordinator.delivery.redispatch.redispatch` at the predicted point.

        Each has the predicted value, its limit and d value / d injection (per W) at each connection
        bus, linearised at the predicted voltages. Only those within the window of their limit are
        listed. A lower voltage limit is passed negated, as redispatch expects. Names:
        ``v_max:BUS``, ``v_min:BUS``, ``line:NAME``, ``trafo:NAME``. With ``tighten`` the limits are
        moved inward by the screen's margins, so that a schedule redispatched onto them holds in
        the AC power flow too (the screen's error is smaller than the margin).
        """
        p = self.vector(schedule)
        u = self._currents_in(p[None, :])[0]
        vc = self._w_c + self._z_c @ u if self.corrections else self._w_c
        du = 1.0 / np.conj(vc)  # d(injected current)/dP per W at each connection bus
        lim = self.grid.limits
        mv = self.margin_v_pu if tighten else 0.0
        ml = self.margin_loading_pp if tighten else 0.0
        v_max, v_min = lim.v_max_pu - mv, lim.v_min_pu + mv
        out: list[Constraint] = []

        def sens(row: F64) -> dict[str, float]:
            return {b: float(x) for b, x in zip(self.buses, row, strict=True) if x != 0.0}

        v = self._w_v + self._z_v @ u
        vm = np.abs(v)
        dvm = np.real(np.conj(v)[:, None] * self._z_v * du[None, :]) / vm[:, None]
        for i, b in enumerate(self.v_buses):
            if vm[i] >= v_max - window_v_pu:
                out.append(Constraint(f"v_max:{b}", float(vm[i]), v_max, sens(dvm[i])))
            if vm[i] <= v_min + window_v_pu:
                out.append(Constraint(f"v_min:{b}", float(-vm[i]), -v_min, sens(-dvm[i])))
        for (if0, gf, it0, gt, sf, st), names, limit, prefix in zip(
            self._branches,
            (self.lines, self.transformers),
            (lim.line_max_percent - ml, lim.trafo_max_percent - ml),
            ("line", "trafo"),
            strict=True,
        ):
            i_f = if0 + gf @ u
            i_t = it0 + gt @ u
            lf = np.abs(i_f) * sf
            lt = np.abs(i_t) * st
            for k, n in enumerate(names):
                val, cur, g, sc = (
                    (lf[k], i_f[k], gf[k], sf[k]) if lf[k] >= lt[k] else (lt[k], i_t[k], gt[k], st[k])
                )
                if val < limit - window_loading_pp or abs(cur) == 0:
                    continue
                d = np.real(np.conj(cur) * g * du) / abs(cur) * sc
                out.append(Constraint(f"{prefix}:{n}", float(val), limit, sens(d)))
        return out
