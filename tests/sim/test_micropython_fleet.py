"""The firmware on the real MicroPython unix port, one process per board, on paced simulated time:
three boards on Mosquitto through a coordinator kill -9 and a forged frame. Every reading the boards
signed is in the ledger once (or still on a board's flash when it stopped), money sums to zero."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from sim import brokers, scenario
from sim.faults import Faults
from sim.run import RunResult, run


def test_micropython_boards_with_a_coordinator_kill(tmp_path: Path) -> None:
    sc = scenario.load("quartierstrom").shorter(0.5, homes=3, from_h=10)
    faults = Faults(coordinator_kill=(1200,), forged=1)
    sc = dataclasses.replace(sc, boards="micropython", speedup=300, faults=faults)

    async def main() -> RunResult:
        return await run(sc, brokers.Mosquitto(tmp_path), tmp_path)

    r = asyncio.run(asyncio.wait_for(main(), 120))
    inv = r.invariants
    assert inv.ok, "\n".join(inv.lines())
    assert inv.lost == 0 and inv.stale == 0 and inv.stored + inv.queued == inv.sent
    assert inv.queued <= len(sc.homes)  # at most a reading each, cut off by the stop
    # each board read on its schedule from one step before the start to the end: 7 or 8 readings
    for h in sc.homes:
        assert 7 <= len(r.sent[h.board]) <= 8
    assert inv.refused["bad_signature"] >= 1  # the forged frame (again after the kill: not acked)
    assert inv.intervals >= 2 and inv.money_sum == 0
    assert "killed" in " ".join(r.events)
