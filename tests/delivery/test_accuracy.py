"""The screen against pandapower's AC power flow over many seeded random schedules.

For each benchmark grid (CIGRE LV, Kerber Landnetz cable 1, SimBench rural1 scenario 2) and each
kind of schedule (mixed, high-PV export, heavy load: see coordinator.delivery.schedules), every
schedule is run through runpp and through the screen with and without the correction step. The
error bounds asserted below were measured with these seeds and carry headroom of about 1.5x;
they are taken over schedules whose AC state stays within 0.90-1.10 pu and 150 % loading (the
"envelope": past it a schedule is far beyond a limit and is flagged anyway). The error comes from
the linearisation at no load (losses and the current's dependence on voltage), so it grows with
the distance from no load: heavy load on CIGRE's long residential feeder is the worst case.

Safety properties (default margins, corrections=1):
- per schedule, everywhere: check() is ok exactly when the AC power flow finds no violation
  (no schedule that violates in AC passes the screen unconfirmed);
- per quantity, inside the envelope: every bus voltage, line or transformer that AC finds beyond
  its limit was flagged by the screen (violation or borderline).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pytest

from coordinator.delivery.schedules import KINDS, random_schedules
from coordinator.delivery.screen import MARGINS, GridState
from tests.delivery.conftest import GRIDS, grid_by_name, screen_by_name

N = 50  # schedules per grid and kind: 150 runpp per grid
SEED = 2024

# worst errors inside the envelope, measured with these seeds (pu, percentage points):
#   corrections=1: CIGRE 0.00107 / 1.02, Kerber 0.00030 / 0.62, SimBench 0.00023 / 0.63
#   corrections=0: CIGRE 0.0140 / 6.6,   Kerber 0.0059 / 5.0,   SimBench 0.0057 / 4.9
# bounded below with about 1.5x headroom (numerical noise across platforms is far smaller)
BOUNDS = {
    1: {
        "cigre_lv": (0.0016, 1.6),
        "kerber_landnetz_kabel_1": (0.0005, 1.0),
        "1-LV-rural1--2-sw": (0.0004, 1.0),
    },
    0: {
        "cigre_lv": (0.020, 10.0),
        "kerber_landnetz_kabel_1": (0.009, 7.5),
        "1-LV-rural1--2-sw": (0.009, 7.5),
    },
}


@dataclass
class Comparison:
    n: int
    n_env: int
    n_violating: int  # schedules with an AC violation
    n_checked: int  # schedules that check() sent to AC
    dv: dict[int, float]  # max |V screen - V AC| inside the envelope, pu, per corrections
    dl: dict[int, float]  # max |loading screen - loading AC|, percentage points
    dv_all: dict[int, float]  # the same over all schedules
    dl_all: dict[int, float]
    missed_quantities: int  # inside the envelope, AC violations the screen did not flag
    verdict_mismatches: int  # check().ok differs from the AC verdict


def _loading(s: GridState) -> np.ndarray:
    return np.r_[s.line_loading, s.trafo_loading]


@functools.cache
def compare(name: str) -> Comparison:
    grid = grid_by_name(name)
    screens = {c: screen_by_name(name, c) for c in MARGINS}
    default = screens[1]
    schedules = [s for i, k in enumerate(KINDS) for s in random_schedules(grid, N, seed=SEED + i, kind=k)]
    ac = [default.ac(s) for s in schedules]
    env = np.array(
        [a.vm_pu.min() >= 0.90 and a.vm_pu.max() <= 1.10 and _loading(a).max() <= 150.0 for a in ac],
        dtype=bool,
    )
    vectors = np.array([default.vector(s) for s in schedules])
    dv: dict[int, float] = {}
    dl: dict[int, float] = {}
    dv_all: dict[int, float] = {}
    dl_all: dict[int, float] = {}
    for c, scr in screens.items():
        pred = scr.predict_many(vectors)
        ev = np.array([np.abs(pred.vm_pu[i] - a.vm_pu).max() for i, a in enumerate(ac)])
        el = np.array(
            [
                np.abs(np.r_[pred.line_loading[i], pred.trafo_loading[i]] - _loading(a)).max()
                for i, a in enumerate(ac)
            ]
        )
        dv[c], dl[c] = float(ev[env].max()), float(el[env].max())
        dv_all[c], dl_all[c] = float(ev.max()), float(el.max())
    missed = 0
    mismatches = 0
    violating = 0
    checked = 0
    for i, (s, a) in enumerate(zip(schedules, ac, strict=True)):
        truth = {(f.kind, f.where) for f in default.flags(a, margins=False)}
        flagged = {(f.kind, f.where) for f in default.screen(s)}
        violating += bool(truth)
        if env[i]:
            missed += len(truth - flagged)
        r = default.check(s)
        checked += r.ac_checked
        mismatches += r.ok != (not truth)
    return Comparison(
        len(schedules), int(env.sum()), violating, checked, dv, dl, dv_all, dl_all, missed, mismatches
    )


@pytest.mark.parametrize("name", GRIDS)
def test_screen_error_is_bounded(name: str) -> None:
    c = compare(name)
    print(f"\n{name}: {c}")
    assert c.n_env >= c.n // 3, "most schedules should be inside the envelope"
    for corr, (bv, bl) in ((k, BOUNDS[k][name]) for k in BOUNDS):
        assert c.dv[corr] <= bv, f"corrections={corr}: voltage error {c.dv[corr]:.5f} pu > {bv}"
        assert c.dl[corr] <= bl, f"corrections={corr}: loading error {c.dl[corr]:.3f} pp > {bl}"
    # the default margins cover the measured error
    for corr, (mv, ml) in MARGINS.items():
        assert c.dv[corr] < mv and c.dl[corr] < ml


@pytest.mark.parametrize("name", GRIDS)
def test_no_false_negatives(name: str) -> None:
    c = compare(name)
    assert 0 < c.n_violating < c.n, "the schedules must include feasible and violating ones"
    assert c.verdict_mismatches == 0
    assert c.missed_quantities == 0
    assert c.n_checked >= c.n_violating  # every violating schedule went to AC, and few others
