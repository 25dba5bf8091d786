"""The screen's behaviour: sensitivities, SimBench noon and year, checks, errors, redispatch, bench."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.delivery.bench import bench_screen
from coordinator.delivery.errors import PowerFlowError, ScheduleError
from coordinator.delivery.grid import GridModel
from coordinator.delivery.redispatch import Resource, redispatch
from coordinator.delivery.schedules import simbench_peak_pv_step, simbench_schedules
from coordinator.delivery.screen import (
    EXPORT,
    IMPORT,
    LINE,
    NO_SOLUTION,
    OUT_OF_RANGE,
    TRAFO,
    VOLTAGE_HIGH,
    Screen,
)
from tests.delivery.conftest import SIMBENCH, screen_by_name


def test_sensitivity_matches_finite_differences_of_runpp() -> None:
    """The screen's d|V|/dP at no load is the AC power flow's derivative (1 kW perturbation)."""
    scr = screen_by_name("kerber_landnetz_kabel_1")
    base = scr.ac({})
    sens = scr.sensitivity_v
    for col in (0, len(scr.buses) - 1):
        step = scr.ac({scr.buses[col]: 1000})
        fd = (step.vm_pu - base.vm_pu) / 1000
        assert np.abs(fd - sens[:, col]).max() <= 0.01 * np.abs(sens[:, col]).max()
        assert sens[:, col].max() > 0  # injecting raises voltages


def test_high_pv_noon_violates_and_moderate_does_not(rural: GridModel) -> None:
    """SimBench rural1, 2034 scenario, the sunniest 15 minutes of the year (26 May, 13:00)."""
    scr = screen_by_name(SIMBENCH)
    step = simbench_peak_pv_step(rural)
    high, moderate = (simbench_schedules(rural, [step], pv_scale=k)[0] for k in (1.0, 0.5))
    assert sum(high.values()) > 200_000  # W exported into a 160 kVA station

    ac = scr.ac(high)
    kinds = {f.kind for f in scr.flags(ac, margins=False)}
    assert kinds & {VOLTAGE_HIGH, LINE, TRAFO}
    assert ac.vm_pu.max() > rural.limits.v_max_pu
    r = scr.check(high)
    assert not r.ok and r.ac_checked
    assert all(v.confirmed and v.screened for v in r.violations)
    assert {v.kind for v in r.violations} == kinds

    assert not scr.flags(scr.ac(moderate), margins=False)
    assert scr.check(moderate).ok


def test_simbench_year_sample() -> None:
    """96 random quarter hours of the SimBench year: the screen agrees with AC on every verdict."""
    scr = screen_by_name(SIMBENCH)
    steps = sorted(np.random.default_rng(5).choice(35_136, size=96, replace=False).tolist())
    schedules = simbench_schedules(scr.grid, steps)
    worst_v = worst_l = 0.0
    for s in schedules:
        ac = scr.ac(s)
        pred = scr.predict(s)
        worst_v = max(worst_v, float(np.abs(pred.vm_pu - ac.vm_pu).max()))
        worst_l = max(worst_l, float(np.abs(pred.line_loading - ac.line_loading).max()))
        assert scr.check(s).ok == (not scr.flags(ac, margins=False))
    assert worst_v < 0.0005 and worst_l < 0.5  # measured 0.0001 pu, 0.2 pp


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(-40_000, 30_000), min_size=8, max_size=8))
def test_check_agrees_with_ac_for_any_schedule(powers: list[int]) -> None:
    scr = screen_by_name("kerber_landnetz_kabel_1")
    schedule = dict(zip(scr.buses, powers, strict=True))
    r = scr.check(schedule)
    truth = scr.flags(scr.ac(schedule), margins=False)
    assert r.ok == (not truth)
    assert not r.missed


def test_unsolvable_schedule_is_a_violation_not_a_crash() -> None:
    scr = screen_by_name("cigre_lv")
    absurd = {"Bus R18": -20_000_000}
    with pytest.raises(PowerFlowError, match="did not converge"):
        scr.ac(absurd)
    r = scr.check(absurd)
    assert not r.ok and r.violations[0].kind == NO_SOLUTION
    assert any(f.kind == OUT_OF_RANGE for f in r.findings)


def test_schedule_errors() -> None:
    scr = screen_by_name("cigre_lv")
    with pytest.raises(ScheduleError, match="'Bus X9' is not a connection bus"):
        scr.check({"Bus X9": 1000})
    with pytest.raises(ScheduleError, match="integer in W"):
        scr.check({"Bus R11": 1.5})  # type: ignore[dict-item]
    with pytest.raises(ScheduleError, match="integer in W"):
        scr.check({"Bus R11": True})


def test_quiet_schedule_needs_no_ac() -> None:
    scr = screen_by_name("cigre_lv")
    r = scr.check({b: -1000 for b in scr.buses})
    assert r.ok and not r.ac_checked and not r.findings


def test_confirm_false_reports_the_screen_only() -> None:
    scr = screen_by_name("cigre_lv")
    heavy = {b: 60_000 for b in scr.buses}
    r = scr.check(heavy, confirm=False)
    assert not r.ok and not r.ac_checked
    assert all(not v.confirmed for v in r.violations)


def test_board_limits_and_pilot(pilot: GridModel) -> None:
    scr = Screen(pilot)
    r = scr.check_boards({"house-01": 12_000, "house-02": -9_000, "school": 1_000})
    got = {(v.kind, v.where, v.value, v.limit) for v in r.violations}
    assert got == {(EXPORT, "house-01", 12_000.0, 10_000.0), (IMPORT, "house-02", 9_000.0, 8_000.0)}
    with pytest.raises(ScheduleError, match="board 'nobody'"):
        scr.check_boards({"nobody": 1})
    noon = {"house-01": 10_000, "house-02": 4_600, "school": 50_000, "farm": 30_000, "house-04": 8_000}
    r = scr.check_boards(noon)
    assert not r.ok and r.ac_checked and {v.kind for v in r.violations} == {VOLTAGE_HIGH}
    assert {v.where for v in r.violations} == {"C1"}  # the overhead spur to the farm


def test_constraints_feed_redispatch_which_the_ac_check_accepts(pilot: GridModel) -> None:
    """Curtail PV on the pilot with coordinator.delivery.redispatch on the screen's sensitivities."""
    scr = Screen(pilot)
    sched = {"house-01": 10_000, "house-02": 4_600, "school": 50_000, "farm": 30_000, "house-04": 8_000}
    where = {c.board: c.bus for c in pilot.connections}
    assert not scr.check_boards(sched).ok
    cons = scr.constraints(pilot.bus_schedule(sched))  # limits tightened by the screen's margin
    assert any(c.name == "v_max:C1" and c.value > c.limit for c in cons)
    res = [Resource(b, where[b], "pv_limit", w, -1, 4_000) for b, w in sched.items() if w > 0]
    out = redispatch(cons, res)
    assert out.ok, out.remaining
    for a in out.adjustments:
        sched[a.board] += a.delta_w
    r = scr.check_boards(sched)
    assert r.ok, r.violations
    assert sched["farm"] < 30_000  # the farm at the end of the spur is curtailed


def test_bench_screen_reports_both_timings(cigre: GridModel) -> None:
    row = bench_screen(cigre, 5)
    for key in ("screen_ms", "screen_batch_ms", "runpp_ms", "check_ms", "setup_ms", "max_dv_pu"):
        assert isinstance(row[key], float) and row[key] >= 0
    assert row["n"] == 5 and row["connections"] == 15
