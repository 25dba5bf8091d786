"""The OCPP path's added cost per interval at 100 chargers (``--ci``: 10), in one process over
loopback WebSockets: each charger is the ``ocpp`` package's own ChargePoint client (OCPP 1.6J) with
a running session, its member has a board whose signed order for the interval is in the ledger.
Measured: the interval's profile pass (read each member's order, plan, SetChargingProfile to every
charger and its answer stored), the service's once-a-second pass with nothing due (silence check,
cross-check, the refusal log) times the interval's seconds, the bindings check every BINDINGS_S, and
the meter values of an interval (one MeterValues a minute per charger, stored), beside the
interval's length."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from pathlib import Path

from bench.table import Row
from coordinator.chargers.service import BINDINGS_S, OcppService
from coordinator.chargers.settings import OcppSettings
from coordinator.ledger import Ledger
from coordinator.members import MemberPrefs
from tests.chargers.chargepoint import PASSWORD, energy16, open16
from tests.chargers.test_ocpp import EV, GRID, KEY, order

TICKS = 20  # idle passes timed (their mean is taken)
LENGTH = 900


def _ledger(path: Path, n: int, start: int) -> Ledger:
    led = Ledger.open(path)
    prefs = MemberPrefs.parse("m", EV)
    for i in range(n):
        m, b = f"m{i:03d}", f"b{i:03d}"
        led.add_member(m, m, "ev", now=start - 86_400, prefs=prefs)
        led.add_board(b, "virtual", bytes(32), now=start - 86_400, member_id=m, status="active")
        order(led, b, start, 10_000 + i)
    return led


async def _measure(led: Ledger, n: int, start: int) -> tuple[float, float, float]:
    clock = [start + 40]
    ids = [f"CP{i:03d}" for i in range(n)]
    settings = OcppSettings(
        "127.0.0.1:0",
        bindings={cid: f"m{i:03d}" for i, cid in enumerate(ids)},
        passwords=dict.fromkeys(ids, PASSWORD),  # each charger connects with its password
    )
    svc = OcppService(led, settings, GRID, LENGTH, KEY.public, now=lambda: clock[0])
    svc.bind_configured()
    await svc.central.start()
    from ocpp.v16 import call as call16

    clients = []
    try:
        for i in range(n):
            cp, ws, task = await open16(svc.central.port, f"CP{i:03d}")
            await cp.call(
                call16.StartTransaction(
                    connector_id=1, id_tag="car", meter_start=1000, timestamp="2025-06-15T12:00:00Z"
                )
            )
            clients.append((cp, ws, task))
        t0 = time.perf_counter()
        await svc.send_profiles(start, clock[0])
        profiles = time.perf_counter() - t0
        assert all(cp.box.profiles for cp, _, _ in clients)
        # the service's once-a-second pass with nothing due (profiles sent): the silence check,
        # the cross-check, the refusal log; and the bindings check it makes every BINDINGS_S
        svc.next_bindings = clock[0] + LENGTH
        await svc.tick()
        t0 = time.perf_counter()
        for _ in range(TICKS):
            await svc.tick()
        tick = (time.perf_counter() - t0) / TICKS
        t0 = time.perf_counter()
        await svc.check_bindings()
        bindings = time.perf_counter() - t0
        checks = tick * (LENGTH - 1) + bindings * (LENGTH // BINDINGS_S)
        t0 = time.perf_counter()
        for k in range(3):  # three rounds of one MeterValues per charger, all at once
            clock[0] += 1
            await asyncio.gather(*(cp.call(energy16(1000 + 100 * (k + 1), soc=50)) for cp, _, _ in clients))
        meter = (time.perf_counter() - t0) / 3
        for _, ws, task in clients:
            await ws.close()
            task.cancel()
    finally:
        await svc.central.close()
    return profiles, checks, meter


def run(ci: bool) -> list[Row]:
    n = 10 if ci else 100
    logging.getLogger("peergrid.ocpp").setLevel(logging.ERROR)  # a hundred connects and closes
    start = 1_750_000_000 - 1_750_000_000 % LENGTH
    with tempfile.TemporaryDirectory() as d:
        led = _ledger(Path(d) / "l.db", n, start)
        try:
            profiles, checks, meter = asyncio.run(_measure(led, n, start))
        finally:
            led.close()
    per_interval = profiles + checks + meter * (LENGTH // 60)  # one MeterValues a minute per charger
    iv_ms = LENGTH * 1000
    return [
        Row(
            f"ocpp: profiles to {n} chargers (plan, SetChargingProfile, answer stored)",
            profiles * 1000,
            "ms",
            iv_ms,
            "interval",
        ),
        Row(
            f"ocpp: the once-a-second passes of an interval (silence, cross-check, bindings), {n} chargers",
            checks * 1000,
            "ms",
            iv_ms,
            "interval",
        ),
        Row(
            f"ocpp: one MeterValues from each of {n} chargers, stored", meter * 1000, "ms", iv_ms, "interval"
        ),
        Row(
            f"ocpp: added cost per {LENGTH} s interval, {n} chargers",
            per_interval * 1000,
            "ms",
            iv_ms,
            "interval",
            "< 1 % of the interval",
        ),
    ]
