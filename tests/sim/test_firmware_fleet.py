"""The real board firmware (firmware/app.py) in-process under CPython, one MQTT connection per board,
on simulated time: a community on Mosquitto through a broker restart, a coordinator kill -9, a board
reboot and forged, replayed and moved frames. Every reading each board signed is in the ledger once,
on the board's reading schedule, and energy and money are conserved."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from sim import brokers, metrics, scenario
from sim.faults import Faults, Reboot
from sim.run import RunResult, run


def test_firmware_boards_in_process_with_faults(tmp_path: Path) -> None:
    sc = scenario.load("quartierstrom").shorter(2, homes=6, from_h=10)
    members = [h.member for h in sc.homes]
    faults = Faults(
        broker_restart=(2700,),
        broker_down_s=0.5,
        coordinator_kill=(4500,),
        reboot=(Reboot(members[2], 4000),),
        forged=1,
        replayed=1,
        moved=1,
    )
    sc = dataclasses.replace(sc, boards="firmware", faults=faults)

    async def main() -> RunResult:
        return await run(sc, brokers.Mosquitto(tmp_path), tmp_path)

    r = asyncio.run(asyncio.wait_for(main(), 120))
    inv = r.invariants
    assert inv.ok, "\n".join(inv.lines())
    assert inv.lost == 0 and inv.stale == 0 and inv.stored == inv.sent
    assert inv.refused["bad_signature"] == 1 and inv.refused["wrong_topic"] == 1
    assert inv.intervals == 8 and inv.money_sum == 0
    # every board read on schedule: at the start and every reading_s (the rebooted one once more)
    per_board = sc.duration_s // sc.reading_s + 1
    for h in sc.homes:
        assert per_board <= len(r.sent[h.board]) <= per_board + 1
    assert all(what in " ".join(r.events) for what in ("rebooted", "killed", "broker restarted"))
    # the boards' registers were fed by the same physics the summary counts: the smart meter's P1
    # registers keep whole Wh, and the last reading may be taken before the last step's poll
    metered = sum(abs(x) for p in r.power.values() for x in p) * 60 * 1000 // 3600
    last_step = sum(abs(p[-1]) for p in r.power.values()) * 60 * 1000 // 3600
    assert 0 <= metered - (inv.settled_mwh + inv.unsettled_mwh) <= last_step + 2000 * len(sc.homes)
    assert metrics.summarize(r).load > 0
