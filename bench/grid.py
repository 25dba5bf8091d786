"""The delivery screen beside pandapower's AC power flow (runpp), measured in the same run."""

from __future__ import annotations

from bench.table import Row
from coordinator.delivery.bench import bench_screen
from coordinator.delivery.grid import load_pandapower, load_simbench


def run(ci: bool) -> list[Row]:
    n = 20 if ci else 200
    grids = [load_pandapower("cigre_lv"), load_pandapower("kerber_landnetz_kabel_1")]
    if not ci:
        grids.append(load_simbench("1-LV-rural1--2-sw"))
    rows = []
    for g in grids:
        r = bench_screen(g, n)
        rows.append(
            Row(
                f"grid screen, {r['grid']} ({r['connections']} connections)",
                float(r["screen_ms"]),
                "ms",
                float(r["runpp_ms"]),
                "pandapower runpp",
            )
        )
        rows.append(
            Row(
                f"grid check incl. AC where flagged ({float(r['ac_share']):.0%} of schedules)",
                float(r["check_ms"]),
                "ms",
                float(r["runpp_ms"]),
                "runpp every time",
            )
        )
    return rows
