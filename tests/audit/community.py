"""Test helper: a small community's ledger as a running coordinator leaves it: members, boards,
board-signed readings verified and stored, intervals settled by the interval loop with
coordinator-signed Results, a few rejections and a PV export limit. Plus its config file."""

from __future__ import annotations

import asyncio
import calendar
from dataclasses import astuple, dataclass
from pathlib import Path

from coordinator import config
from coordinator.ledger import Ledger
from coordinator.market import Tariff
from protocol import crypto
from sim.board import VirtualBoard
from tests.coordinator.readings import store
from tests.coordinator.service import interval_loop

GRID = "g1"
START = calendar.timegm((2025, 11, 20, 10, 0, 0, 0, 0, 0))  # a sunny morning, UTC
TARIFF = Tariff(feed_in=4_000, retail=20_750, grid_fee=6_000, grid_fee_local=3_000)
FIXED_PER_DAY = 2_000_000_000  # 2 cents a day, nano-cent
PROFILES = {  # W: + import, - export
    "alice": (lambda t: -2500 + (t % 300), "f1"),
    "bob": (lambda t: -800 + (t % 120), "f1"),
    "carol": (lambda t: 1500 + (t % 500), "f1"),
    "dave": (lambda t: 600 + (t % 60), "f2"),
}


@dataclass(frozen=True)
class Community:
    config: Path
    ledger: Path
    start: int
    end: int
    key: crypto.SigningKey
    boards: dict[str, VirtualBoard]


def build(tmp: Path, hours: int = 2, step: int = 60, timezone: str | None = None) -> Community:
    """The community in ``tmp``; ``timezone``: its config's ``[billing] timezone``."""
    cfg = tmp / "site.toml"
    cfg.write_text(
        f'[coordinator]\ngrid = "{GRID}"\nledger = "ledger.db"\nkey = "coordinator.key"\n'
        f"[market]\nfixed_per_day = {FIXED_PER_DAY}\n"
        + ("" if timezone is None else f'[billing]\ntimezone = "{timezone}"\n')
    )
    c = config.load(cfg)
    assert c.key is not None
    key = crypto.SigningKey(config.load_key(c.key))
    end = START + hours * 3600
    boards = {}
    with Ledger.open(c.ledger) as led:
        for i, (m, (prof, feeder)) in enumerate(PROFILES.items()):
            led.add_member(m, m.title(), "prosumer", now=START, feeder=feeder)
            b = VirtualBoard(GRID, f"b-{m}", bytes([i + 1]) * 32, prof)
            led.add_board(b.board, "virtual", b.key.public, now=START, member_id=m, status="active")
            boards[m] = b
        store(led, boards.values(), range(START, end + 1, step))
        sent: list[tuple[str, bytes]] = []

        async def publish(topic: str, fr: bytes) -> None:
            sent.append((topic, fr))

        loop = interval_loop(led, key, lambda: end + 61, publish, grid=GRID, tariff=astuple(TARIFF))
        settled = asyncio.run(loop.step())
        assert len(settled) == hours * 4 and len(sent) == hours * 4
        led.count_rejections({"bad_signature": 2, "replay": 1})
        led._conn.execute(
            "INSERT INTO curtailments VALUES (?,?,?,?,?,?)",
            (START + 900, "b-alice", 1500, 1000, "bus f1 voltage 1.10 pu > 1.10 pu", 12_000_000),
        )
        led._conn.execute(
            "INSERT INTO redispatches VALUES (?,?,?,?,?,?,?)",
            (START + 1800, "b-bob", "battery", 2000, -1000, "trafo:T1 104.2000 > 98.0000", 5_000_000),
        )
        led._conn.execute(
            "INSERT INTO grid_checks VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (START + 1800, 0.97, "f1-3", 1.04, "f1-1", 61.5, "L2", 97.9, "T1", 0, "screen", 1),
        )
    return Community(cfg, c.ledger, START, end, key, boards)
