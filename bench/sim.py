"""The simulator end to end: a community of virtual boards signing readings over Mosquitto into the
coordinator's ingest, settled every interval, for 100 and 1,000 boards. Prints the simulated-time
speed-up, how many boards that is in real time (boards x speed-up), and the readings per second
the whole loop sustained beside the raw Ed25519 verify rate measured in the same run. Twice: with
virtual boards (the protocol code that signs a reading, all boards on one MQTT connection) and with
the real firmware in-process (sim/firmware_fleet.py: one MQTT connection and four tasks per board)."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.table import Row, rate
from sim import brokers, scenario
from sim.run import run as simulate


def community(n: int, hours: float, boards: str) -> scenario.Scenario:
    return scenario.parse(
        {
            "name": f"bench{n}",
            "boards": boards,
            "seed": 7,
            "date": "2025-06-21",
            "start_h": 10,
            "duration_h": hours,
            "reading_s": 300,
            "group": [
                {"prefix": "p", "count": n // 2, "annual_kwh": [2500, 6000], "pv_kwp": [4, 12]},
                {"prefix": "c", "count": n - n // 2, "annual_kwh": [2500, 6000]},
            ],
        }
    )


def one(n: int, hours: float, boards: str) -> list[Row]:
    sc = community(n, hours, boards)
    with tempfile.TemporaryDirectory() as tmp:
        res = asyncio.run(simulate(sc, brokers.Mosquitto(Path(tmp)), Path(tmp)))
    if not res.invariants.ok:
        raise RuntimeError("simulation invariants failed:\n" + "\n".join(res.invariants.lines()))
    key = Ed25519PrivateKey.generate()
    pub, sig = key.public_key(), key.sign(b"x" * 120)
    raw = rate(lambda: pub.verify(sig, b"x" * 120), 2000, repeat=3)
    tag = f"sim {n:,} {boards} boards, {hours:g} h"
    return [
        Row(f"{tag}: simulated-time speed-up", res.speedup, "x real time"),
        Row(f"{tag}: boards in real time", res.speedup * n, "boards"),
        Row(
            f"{tag}: readings through the loop",
            res.readings / res.wall_s,
            "readings/s",
            raw,
            "(raw Ed25519 verify, one core)",
        ),
    ]


def run(ci: bool) -> list[Row]:
    logging.getLogger("peergrid").setLevel(logging.ERROR)  # refused frames etc. are counted, not shown
    sizes = [(20, 1.0), (100, 0.5)] if ci else [(100, 4.0), (1000, 1.0)]
    rows: list[Row] = []
    for n, hours in sizes:
        rows.extend(one(n, hours, "virtual"))
    for n, hours in [(10, 0.5), (100, 0.25)] if ci else [(100, 1.0), (1000, 0.5)]:
        rows.extend(one(n, hours, "firmware"))
    return rows
