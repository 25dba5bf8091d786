"""Faults a run injects, and the lossy link that boards publish through.

``[faults]`` in a scenario (times are of the day, like the run's start; all optional)::

    loss = 0.02                  # share of board publishes lost on the way (no PUBACK: the board
                                 #   keeps the frame in its store-and-forward spool and sends it again)
    duplicate = 0.01             # share delivered twice (a retransmission whose PUBACK was lost)
    reorder = 0.01               # share swapped with the board's next frame on the way
    broker_restart = ["06:00"]   # the broker stops and starts again (down for broker_down_s)
    broker_down_s = 2
    coordinator_kill = ["09:10"] # the coordinator's ingest and interval tasks die without a flush
                                 #   (kill -9) and are started again on the same ledger
    forged = 2                   # frames for a real board signed with another key
    replayed = 2                 # accepted frames sent again by an attacker
    moved = 1                    # a good frame published on another board's topic
    [[faults.offline]]           # a board loses its network for a while (keeps metering, spools)
    board = "h03"
    at = "10:00"
    hours = 1
    [[faults.reboot]]            # a board restarts: state from flash, sequence above the ceiling
    board = "h05"
    at = "12:00"
    [[faults.skew]]              # a board's clock is off by this many seconds (+ ahead)
    board = "h07"
    seconds = 120
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from sim.errors import ScenarioError

_KEYS = {
    "loss", "duplicate", "reorder", "broker_restart", "broker_down_s", "coordinator_kill", "forged",
    "replayed", "moved", "offline", "reboot", "skew",
}  # fmt: skip


@dataclass(frozen=True)
class Offline:
    member: str
    at: int  # seconds after the run's start
    seconds: int


@dataclass(frozen=True)
class Reboot:
    member: str
    at: int


@dataclass(frozen=True)
class Skew:
    member: str
    seconds: int


@dataclass(frozen=True)
class Faults:
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    broker_restart: tuple[int, ...] = ()  # seconds after the run's start
    broker_down_s: float = 2.0
    coordinator_kill: tuple[int, ...] = ()
    forged: int = 0
    replayed: int = 0
    moved: int = 0
    offline: tuple[Offline, ...] = ()
    reboot: tuple[Reboot, ...] = ()
    skew: tuple[Skew, ...] = ()

    @property
    def any(self) -> bool:
        return self != Faults()

    def describe(self) -> list[str]:
        out = []
        for key, label in (("loss", "lost"), ("duplicate", "duplicated"), ("reorder", "reordered")):
            v = getattr(self, key)
            if v:
                out.append(f"{v:.1%} of publishes {label}")
        out += [f"broker restart at +{t / 3600:.2f} h" for t in self.broker_restart]
        out += [f"coordinator kill -9 at +{t / 3600:.2f} h" for t in self.coordinator_kill]
        out += [f"{o.member} offline {o.seconds / 3600:g} h from +{o.at / 3600:.2f} h" for o in self.offline]
        out += [f"{r.member} reboots at +{r.at / 3600:.2f} h" for r in self.reboot]
        out += [f"{s.member} clock {s.seconds:+d} s" for s in self.skew]
        if self.forged:
            out.append(f"{self.forged} forged frames")
        if self.replayed:
            out.append(f"{self.replayed} replayed frames")
        if self.moved:
            out.append(f"{self.moved} frames moved to another board's topic")
        return out


def standard(members: list[str], duration_s: int, *, link: bool = True) -> Faults:
    """Every fault once over a run of ``duration_s`` (the demo's ``--faults``): lossy, duplicating and
    reordering links, a broker restart at 30 %, a coordinator kill -9 at 55 %, the second board
    offline for an hour (or a quarter of the run) from 20 %, the third rebooting at 45 %, the fourth
    with its clock 2 minutes ahead. ``link=False`` (boards with their own MQTT client) leaves out
    the link faults and the offline board."""
    at = [int(duration_s * x) for x in (0.2, 0.3, 0.45, 0.55)]
    m = members + [""] * 4
    return Faults(
        loss=0.02 if link else 0.0,
        duplicate=0.02 if link else 0.0,
        reorder=0.02 if link else 0.0,
        broker_restart=(at[1],),
        broker_down_s=1.0,
        coordinator_kill=(at[3],),
        offline=(Offline(m[1], at[0], min(3600, duration_s // 4)),) if link and m[1] else (),
        reboot=(Reboot(m[2], at[2]),) if m[2] else (),
        skew=(Skew(m[3], 120),) if m[3] else (),
    )


def _share(t: dict[str, Any], key: str, where: str) -> float:
    v = t.get(key, 0.0)
    if type(v) not in (int, float) or not 0 <= v < 0.5:
        raise ScenarioError(f"{where}.{key} must be a share in [0, 0.5), got {v!r}")
    return float(v)


def _at(v: Any, offset: int, where: str) -> int:
    from sim.scenario import hhmm

    return hhmm(v, where) - offset


def parse_faults(t: Any, offset: int, where: str) -> Faults:
    """``offset``: seconds from midnight to the run's start (times in the file are of the day)."""
    if not isinstance(t, dict):
        raise ScenarioError(f"{where} must be a table")
    extra = sorted(set(t) - _KEYS)
    if extra:
        raise ScenarioError(f"{where}: unknown key {extra[0]!r} (allowed: {', '.join(sorted(_KEYS))})")

    def count(key: str) -> int:
        v = t.get(key, 0)
        if type(v) is not int or v < 0:
            raise ScenarioError(f"{where}.{key} must be a count, got {v!r}")
        return v

    def tables(key: str) -> list[dict[str, Any]]:
        v = t.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, dict) and "board" in x for x in v):
            raise ScenarioError(f"{where}.{key} must be an array of tables with a board")
        return v

    return Faults(
        loss=_share(t, "loss", where),
        duplicate=_share(t, "duplicate", where),
        reorder=_share(t, "reorder", where),
        broker_restart=tuple(_at(x, offset, f"{where}.broker_restart") for x in t.get("broker_restart", [])),
        broker_down_s=float(t.get("broker_down_s", 2.0)),
        coordinator_kill=tuple(
            _at(x, offset, f"{where}.coordinator_kill") for x in t.get("coordinator_kill", [])
        ),
        forged=count("forged"),
        replayed=count("replayed"),
        moved=count("moved"),
        offline=tuple(
            Offline(
                str(x["board"]),
                _at(x.get("at"), offset, f"{where}.offline.at"),
                int(x.get("hours", 1) * 3600),
            )
            for x in tables("offline")
        ),
        reboot=tuple(
            Reboot(str(x["board"]), _at(x.get("at"), offset, f"{where}.reboot.at")) for x in tables("reboot")
        ),
        skew=tuple(Skew(str(x["board"]), int(x.get("seconds", 0))) for x in tables("skew")),
    )


@dataclass
class LinkStats:
    lost: int = 0  # publishes that did not arrive (sent again later)
    duplicated: int = 0
    reordered: int = 0
    delivered: int = 0  # reading frames that reached the broker, copies included


class Link:
    """Decides, per frame, what the network does with a board's publishes (seeded, deterministic).

    ``plan(board, frames)`` takes one board's queued frames in order and returns ``(deliver, acked)``:
    the frames that reach the broker, in arrival order (duplicates and late frames included), and
    how many frames from the front of the queue were acknowledged (the board drops those from its
    spool; the rest go again with the next batch, in order). A reordered frame is acknowledged but
    held back by the network and arrives after the board's next frame."""

    def __init__(self, faults: Faults, seed: int) -> None:
        self.f = faults
        self.rng = random.Random(seed ^ 0x5EED)
        self.stats = LinkStats()
        self.held: dict[str, list[tuple[str, bytes]]] = {}

    def plan(self, board: str, frames: list[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], int]:
        out: list[tuple[str, bytes]] = []
        late = self.held.pop(board, [])
        acked = 0
        for fr in frames:
            if self.f.loss and self.rng.random() < self.f.loss:
                self.stats.lost += 1
                break  # unacknowledged: it and everything after it stay queued, in order
            acked += 1
            if self.f.reorder and not late and self.rng.random() < self.f.reorder:
                self.held.setdefault(board, []).append(fr)
                self.stats.reordered += 1
                continue
            out.append(fr)
            if self.f.duplicate and self.rng.random() < self.f.duplicate:
                out.append(fr)
                self.stats.duplicated += 1
        if late and out:
            out.extend(late)  # overtaken by a newer frame
        elif late:
            self.held[board] = late + self.held.get(board, [])
        self.stats.delivered += len(out)
        return out, acked

    def drain(self) -> list[tuple[str, bytes]]:
        """Frames still held back by the network (delivered at the end of a run)."""
        out = [fr for frames in self.held.values() for fr in frames]
        self.held.clear()
        self.stats.delivered += len(out)
        return out
