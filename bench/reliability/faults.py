"""Fault injection end to end: virtual boards -> a lossy link -> a real Mosquitto -> the ingest
service in its own process -> the SQLite ledger; then every reading the boards signed is looked
up in the ledger and counted.

Faults: the broker restarts (its persistent queue survives on disk), the ingest process is
killed with SIGKILL and started again on the same ledger and MQTT session, a board loses its
network for an hour (it keeps metering and sends its spool afterwards, in order), a board
reboots (its sequence jumps to the next persisted block, its registers survive), and the link
loses (the board sends the frame again later: QoS 1 without PUBACK), duplicates and reorders
a share of the publishes.

Counts per scenario: readings signed (``sent``), frames that reached the broker (``delivered``),
``stored`` (exactly the registers the board signed), ``stale`` (refused because the network
delivered a newer reading of the board first: its energy is in that newer reading's registers),
``lost`` (neither: must be 0), ``double`` (a stored row the board did not sign that way, or a
reading stored twice: must be 0), and whether each board's last stored registers are its final
ones (no energy lost).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.mqttpub import publish_all
from coordinator.ledger import Ledger
from coordinator.provision.brokerconf import SiteSettings
from protocol import frame, messages
from sim.board import VirtualBoard
from tests.broker import Mosquitto

# The broker as the site's generated mosquitto.conf sets it up (``peergrid broker init``): enough
# QoS 1 messages in flight for a whole ingest batch, which ingest acknowledges after its commit.
# (With Mosquitto's default of 20, a backed-up queue can be delivered out of order, and ingest
# refuses a reading that arrives after a newer one of its board.)
BROKER_CONF = f"max_inflight_messages {SiteSettings.max_inflight}\n"

ROOT = Path(__file__).resolve().parents[2]
GRID = "rel"
STEP_S = 60

Frame = tuple[str, bytes]


@dataclass(frozen=True)
class Scenario:
    name: str
    boards: int = 6
    hours: float = 2.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    broker_restart: bool = False
    kill_ingest: bool = False
    outage_h: float = 0.0  # board h0 offline this long from a quarter into the run
    reboot: bool = False  # board h1 reboots half-way


@dataclass
class FaultReport:
    scenario: str
    sent: int = 0
    delivered: int = 0
    stored: int = 0
    stale: int = 0
    lost: int = 0
    double: int = 0
    energy_ok: bool = True
    refused: dict[str, int] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        counted = self.stored + self.stale == self.sent
        return self.lost == 0 and self.double == 0 and self.energy_ok and counted


def _board(i: int) -> VirtualBoard:
    def power(ts: int, i: int = i) -> int:
        w = 300 + 97 * i + (ts // 600) % 7 * 50
        return -w if i % 2 else w

    return VirtualBoard(GRID, f"h{i}", bytes([i + 1]) * 32, power)


def traffic(sc: Scenario, t0: int, rng: random.Random) -> tuple[list[list[Frame]], list[VirtualBoard], int]:
    """The frames on the wire in arrival order, in two halves (a fault fires between them); the
    boards (final registers) and how many readings they signed."""
    boards = [_board(i) for i in range(sc.boards)]
    steps = int(sc.hours * 3600 / STEP_S)
    spool: dict[str, list[Frame]] = {b.board: [] for b in boards}
    held: dict[str, Frame] = {}
    wire: list[Frame] = []
    signed = 0
    out_from, out_to = steps // 4, steps // 4 + int(sc.outage_h * 3600 / STEP_S)
    for k in range(steps):
        ts = t0 + k * STEP_S
        for b in boards:
            if sc.reboot and b.board == "h1" and k == steps // 2:
                b.reboot()
            spool[b.board].append(b.reading(ts))
            signed += 1
            if b.board == "h0" and out_from <= k < out_to:
                continue  # offline: the spool grows
            q = spool[b.board]
            while q:
                fr = q[0]
                if rng.random() < sc.loss:
                    break  # no PUBACK: this frame and the rest go again next time, in order
                q.pop(0)
                if rng.random() < sc.reorder and b.board not in held:
                    held[b.board] = fr  # overtaken on the way by the board's next frame
                    continue
                wire.append(fr)
                if rng.random() < sc.duplicate:
                    wire.append(fr)  # the PUBACK was lost: sent again, arrives twice
                late = held.pop(b.board, None)
                if late is not None:
                    wire.append(late)
    for b in boards:  # the end: spools and held frames drain
        wire.extend(spool[b.board])
        if b.board in held:
            wire.append(held.pop(b.board))
    half = len(wire) // 2
    return [wire[:half], wire[half:]], boards, signed


class _Worker:
    """The ingest service in its own process (bench.ingest_worker), killable with SIGKILL."""

    def __init__(self, db: Path, port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.ingest_worker", str(db), str(port), GRID, "rel-ingest"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the ingest worker did not start")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _settle(db: Path, expect: int, timeout: float = 60.0, quiet_s: float = 10.0) -> None:
    """Wait until the ledger holds ``expect`` readings, or has not grown for ``quiet_s``."""
    with Ledger.open(db) as led:
        deadline = time.monotonic() + timeout
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            n = led.count_readings()
            if n >= expect:
                time.sleep(0.3)  # a duplicate still in flight is refused, not stored
                return
            if n != last:
                last, quiet_since = n, time.monotonic()
            elif time.monotonic() - quiet_since > quiet_s:
                return
            time.sleep(0.05)


def _wait_for(db: Path, n: int, timeout: float = 20.0) -> int:
    """Wait until the ledger holds at least ``n`` readings; return how many it holds."""
    with Ledger.open(db) as led:
        deadline = time.monotonic() + timeout
        while (got := led.count_readings()) < n and time.monotonic() < deadline:
            time.sleep(0.005)
        return got


def readings(wire: list[Frame]) -> list[messages.Reading]:
    """The readings on the wire, in arrival order."""
    out = []
    for _, fr in wire:
        msg = messages.decode(frame.split(fr)[0].tobytes())
        assert isinstance(msg, messages.Reading)
        out.append(msg)
    return out


def storable(wire: list[messages.Reading]) -> int:
    """Readings the ledger should end up with: each one whose first copy arrives before any newer
    reading of its board (the others are refused as stale)."""
    newest: dict[str, int] = {}
    seen: set[tuple[str, int]] = set()
    n = 0
    for r in wire:
        if (r.board, r.seq) not in seen:
            seen.add((r.board, r.seq))
            n += r.seq > newest.get(r.board, -1)
        newest[r.board] = max(newest.get(r.board, -1), r.seq)
    return n


def count(db: Path, wire: list[messages.Reading], boards: list[VirtualBoard], rep: FaultReport) -> None:
    sent: dict[tuple[str, int], messages.Reading] = {}
    overtaken: set[tuple[str, int]] = set()
    newest: dict[str, int] = {}
    for r in wire:
        key = (r.board, r.seq)
        sent[key] = r
        if r.seq < newest.get(r.board, -1):
            overtaken.add(key)
        newest[r.board] = max(newest.get(r.board, -1), r.seq)
    rep.delivered = len(wire)
    with Ledger.open(db) as led:
        stored: Counter[tuple[str, int]] = Counter()
        last = {}
        for b in boards:
            for r, _ in led.readings(b.board):
                stored[(r.board, r.seq)] += 1
                if sent.get((r.board, r.seq)) != r:
                    rep.double += 1  # stored, but not what the board signed
                last[b.board] = r
        rep.double += sum(c - 1 for c in stored.values())
        rep.stored = sum(1 for k in stored if k in sent)
        for k in sent:
            if k not in stored:
                if k in overtaken:
                    rep.stale += 1
                else:
                    rep.lost += 1
        final = {b.board: (b.e_imp, b.e_exp) for b in boards}
        rep.energy_ok = all(b in last and (last[b].e_imp, last[b].e_exp) == final[b] for b in final)
        rep.refused = led.rejections()


def run_scenario(sc: Scenario, seed: int = 7) -> FaultReport:
    rep = FaultReport(sc.name)
    start = time.perf_counter()
    t0 = int(time.time()) - int(sc.hours * 3600) - 600
    halves, boards, signed = traffic(sc, t0, random.Random(seed))
    wire = readings(halves[0] + halves[1])  # the readings in arrival order
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        db = d / "l.db"
        with Ledger.open(db) as led:
            led.add_member("m", "M", "prosumer", now=t0)
            for b in boards:
                led.add_board(b.board, "virtual", b.key.public, now=t0, member_id="m", status="active")
        broker = Mosquitto(d, BROKER_CONF)
        broker.start()
        worker = _Worker(db, broker.port)
        try:
            if sc.kill_ingest:
                # kill -9 while the first half streams in: some batches committed, some not
                pub = threading.Thread(
                    target=publish_all, args=("127.0.0.1", broker.port, halves[0], "rel-boards")
                )
                pub.start()
                done = _wait_for(db, len(halves[0]) // 3)
                worker.kill9()
                pub.join()
                rep.faults.append(
                    f"ingest killed with SIGKILL ({done} of {len(halves[0])} first-half frames committed) "
                    "and started again"
                )
                worker = _Worker(db, broker.port)
            elif sc.broker_restart:
                worker.proc.send_signal(signal.SIGSTOP)  # ingest stalls: the broker queues the first half
                publish_all("127.0.0.1", broker.port, halves[0], "rel-boards")
            else:
                publish_all("127.0.0.1", broker.port, halves[0], "rel-boards")
            if sc.broker_restart:
                broker.restart(down_s=0.5)  # the queue for ingest's persistent session survives on disk
                if sc.kill_ingest:
                    rep.faults.append("broker restarted while ingest caught up after its restart")
                else:
                    worker.proc.send_signal(signal.SIGCONT)
                    rep.faults.append(
                        "broker restarted while holding the first half queued for a stalled ingest"
                    )
            publish_all("127.0.0.1", broker.port, halves[1], "rel-boards")
            _settle(db, storable(wire))
        finally:
            worker.stop()
            broker.stop()
        count(db, wire, boards, rep)
    rep.sent = signed
    if sc.loss or sc.duplicate or sc.reorder:
        rep.faults.append(
            f"link: {sc.loss:.0%} lost (sent again), {sc.duplicate:.0%} duplicated, "
            f"{sc.reorder:.0%} reordered"
        )
    if sc.outage_h:
        rep.faults.append(f"board h0 offline for {sc.outage_h:g} h (spools, then sends in order)")
    if sc.reboot:
        rep.faults.append("board h1 reboots half-way (sequence jumps to the next block)")
    rep.seconds = time.perf_counter() - start
    return rep


def scenarios(long: bool) -> list[Scenario]:
    lossy = Scenario("", loss=0.1, duplicate=0.1, reorder=0.1)  # the link's shares
    if not long:
        return [
            replace(
                lossy,
                name="board faults: 10% loss/dup/reorder, 1 h outage, reboot",
                outage_h=1.0,
                reboot=True,
            ),
            Scenario("broker restart", 6, 1.0, broker_restart=True),
            Scenario("ingest kill -9", 20, 1.0, kill_ingest=True),
        ]
    big = Scenario("", 40, 6.0)
    return [
        replace(big, name="no faults"),
        replace(lossy, name="10% loss, duplication and reordering", boards=40, hours=6.0),
        replace(big, name="hour-long board outage", outage_h=1.0),
        replace(big, name="board reboot", reboot=True),
        replace(big, name="broker restart", broker_restart=True),
        replace(big, name="ingest kill -9", kill_ingest=True),
        replace(
            lossy,
            name="everything at once",
            boards=40,
            hours=6.0,
            outage_h=1.0,
            reboot=True,
            broker_restart=True,
            kill_ingest=True,
        ),
    ]


def run(long: bool) -> list[FaultReport]:
    return [run_scenario(sc, seed=11 + k) for k, sc in enumerate(scenarios(long))]
