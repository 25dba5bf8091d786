"""Frames a coordinator must refuse, sent once mid-run (the scenario's ``forged``, ``replayed`` and
``moved`` faults): readings signed with a key that is not the board's, replays of readings newer
ones have overtaken, and a good reading moved to another board's topic. Every fleet builds them
here from what it knows of its boards."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.service.mqtt import BrokerAddress, Connection
from protocol import topics
from sim.board import MWS_PER_MWH, VirtualBoard

Frame = tuple[str, bytes]
KWH = 1_000_000  # mWh
FAR_AHEAD = 10**6  # a forged sequence number when the board's is not known here


@dataclass(frozen=True)
class Target:
    """A board as a forger sees it: its id, and (boards in this process) its next sequence number
    and import register (mWh). A board whose sequence is not known gets one far ahead: refused for
    its signature, not its number."""

    board: str
    seq: int | None = None
    e_imp: int = 0


def frames(
    grid: str,
    boards: dict[str, Target],
    recent: Sequence[Frame],
    forged: int,
    replayed: int,
    moved: int,
    ts: int,
    rng: random.Random,
) -> list[Frame]:
    """The attack's frames: ``forged`` readings of random boards (``boards``: member -> board)
    claiming a kWh more than the board imported, ``replayed`` older readings out of ``recent``
    (what the boards sent lately, oldest first) and ``moved`` copies of the newest reading on
    another board's topic."""
    out: list[Frame] = []
    members = sorted(boards)
    for i in range(forged):
        real = boards[members[rng.randrange(len(members))]]
        forger = VirtualBoard(grid, real.board, bytes([0xF0, i & 0xFF]) * 16, lambda t: 0)
        forger.seq = FAR_AHEAD + i if real.seq is None else real.seq
        forger.acc_imp = (real.e_imp + KWH) * MWS_PER_MWH
        forger.last_ts = ts
        out.append(forger.reading(ts, 0))
    readings = [x for x in recent if x[0].endswith("/reading")]
    older = readings[: max(1, len(readings) - 2 * len(boards))]  # overtaken by newer ones
    for _ in range(replayed):
        if older:
            out.append(older[rng.randrange(len(older))])
    for _ in range(moved):
        if readings and len(boards) > 1:
            topic, fr = readings[-1]
            other = next(b.board for b in boards.values() if b.board != topic.split("/")[3])
            out.append((topics.board_topic(grid, other, "reading"), fr))
    return out


async def send(address: BrokerAddress, out: list[Frame]) -> None:
    """Publish ``out`` as an outsider would: on a connection of its own."""
    async with Connection(address, "sim-attacker") as conn:
        for t, f in out:
            await conn.publish(t, f)
