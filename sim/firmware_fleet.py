"""The real board firmware (firmware/app.py ``Board``) under CPython: many boards in one process.

Every board is the firmware as it runs on an ESP32 -- its metering task reading a fake DSMR smart
meter's P1 port through the real driver, its cumulative registers persisted to its own files, its signed
readings, its MQTT client (firmware/mqtt.py) with its own connection to the broker, its flash spool
for store-and-forward, its order handler (signed orders verified against the coordinator key) -- fed
by the home's physics through ``FakeHardware``.

Two pieces make hundreds of boards fit one process without touching firmware/:

- ``StepClock``: simulated time that the run advances in steps. A board's ``clock.sleep(s)`` waits
  until the run's time has passed ``now + s``; after each step the fleet waits until every board
  task sleeps again (its publishes acknowledged), so the run stays in lockstep with the boards.
- Each board's files (``key.bin``, ``regs.*``, ``spool*``) live in its own directory: the
  firmware opens relative paths, which resolve against the directory of the board whose task is
  running (a context variable, set when the board and its tasks are created).

Link faults do not apply here (the boards speak MQTT themselves); broker restarts, coordinator
kills, reboots and attacks do. Batteries are not modelled on these boards (no state of charge).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import contextvars
import heapq
import importlib
import json
import logging
import os
import random
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coordinator.service.mqtt import BrokerAddress
from protocol import frame, messages
from sim import attacks
from sim.errors import SimError
from sim.fleet import FlexDuty, SentReading
from sim.profiles import STEP_S, HomePhysics
from sim.scenario import Scenario

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
log = logging.getLogger("peergrid.sim.firmware")
_DIR: contextvars.ContextVar[Path] = contextvars.ContextVar("board_dir")
TASKS_PER_BOARD = 5  # run loop, metering, readings, link, NTP: each sleeps on the clock when idle
SETTLE_S = 10.0  # longest real time to wait for the boards to finish a step


def _open(path: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
    p = Path(path)
    if not p.is_absolute():
        p = _DIR.get() / p
    return builtins.open(p, mode, *args, **kw)


class _BoardOs:
    """The ``os`` calls the spool makes (its segments' directory), in the running board's directory."""

    def listdir(self, path: str) -> list[str]:
        return os.listdir(_DIR.get() / path)

    def mkdir(self, path: str) -> None:
        os.mkdir(_DIR.get() / path)

    def remove(self, path: str) -> None:
        os.remove(_DIR.get() / path)


def firmware() -> Any:
    """Import the firmware's modules (once) with per-board files."""
    if not FIRMWARE.is_dir():
        raise SimError(f"firmware/ not found at {FIRMWARE}: the firmware mode runs from a source checkout")
    if str(FIRMWARE) not in sys.path:
        sys.path.insert(0, str(FIRMWARE))
    for name in ("keys", "persist", "spool", "net"):
        mod: Any = importlib.import_module(name)
        mod.open = _open  # a module global shadows the builtin
    sp: Any = importlib.import_module("spool")
    sp.os = _BoardOs()
    app: Any = importlib.import_module("app")
    # MicroPython's gc: a board collects after every reading and reports its free heap; CPython
    # collects by itself and has no such heap figure
    app.gc = types.SimpleNamespace(collect=lambda: 0, mem_free=lambda: 0)
    app.print = _console  # a board's console (new key, link errors) goes to the log
    return app


def _console(*args: Any) -> None:
    log.debug("board %s: %s", _DIR.get(Path("?")).name, " ".join(str(a) for a in args))


class StepClock:
    """Simulated Unix time that advances only when the run steps it."""

    synced = True

    def __init__(self, t: int) -> None:
        self.t = t
        self.parked = 0
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._n = 0

    def now(self) -> int:
        return self.t

    async def sleep(self, s: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self.t + max(s, 0.001), self._n, fut))
        self._n += 1
        self.parked += 1  # until ``advance`` releases it (counted there, before the task runs)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.cancelled():  # cancelled while asleep: never released
                self.parked -= 1
            raise

    def advance(self, t: int) -> None:
        self.t = t
        while self._heap and self._heap[0][0] <= t:
            fut = heapq.heappop(self._heap)[2]
            if not fut.done():
                fut.set_result(None)
                self.parked -= 1


@dataclass
class _Info:
    board: str
    board_type: str
    key: Any


# boards/esp32-dsmr-p1.toml: the board reads the utility meter's P1 port, which counts import and
# export separately (a PZEM-004T counts energy in one direction only: a PV home's export is lost).
# Its own type name: a scenario home is not bound to that board file's 3 x 25 A connection, so the
# coordinator bounds its readings' energy by the default connection limit (ledger.rules)
BOARD_CFG = {
    "type": "sim-dsmr-p1",
    "frontend": {"chip": "dsmr_p1", "uart": 1, "rx": 16, "tx": 17, "baud": 115200, "invert_rx": True},
    "poll_s": STEP_S,
    "interval_s": 900,
    "status_s": 900,
    "save_s": 900,
}


@dataclass
class BoardFleet:
    """What every fleet of firmware boards (in-process or MicroPython processes) keeps."""

    sc: Scenario
    grid: str
    physics: dict[str, HomePhysics]
    coordinator_key: bytes
    address: BrokerAddress
    workdir: Path
    boards: dict[str, _Info] = field(default_factory=dict)
    sent: dict[str, dict[int, SentReading]] = field(default_factory=dict)
    power: dict[str, list[int]] = field(default_factory=dict)
    battery_w: dict[str, list[int]] = field(default_factory=dict)
    flex: dict[str, list[FlexDuty]] = field(default_factory=dict)
    newest: dict[str, int] = field(default_factory=dict)
    orders_applied: int = 0
    queued: dict[str, set[int]] = field(default_factory=dict)  # still in a board's spool at the end

    def physics_as_run(self) -> dict[str, HomePhysics]:
        """The homes' physics as planned: the fake hardware meters the physics' net power whatever
        setpoints the firmware applied (its actuators drive fake pins and registers, nothing more)."""
        return self.physics

    def registers(self) -> dict[str, tuple[int, int]]:
        """Each board's registers at its last reading that left the board."""
        out = {}
        for board, by_seq in self.sent.items():
            sent = [q for q in by_seq if q not in self.queued.get(board, ())]
            if sent:
                s = by_seq[max(sent)]
                out[board] = (s.e_imp, s.e_exp)
        return out


@dataclass
class FirmwareFleet(BoardFleet):
    attacks: int = 0
    clock: StepClock = field(init=False)
    _app: Any = None
    _fw: dict[str, Any] = field(default_factory=dict)  # member -> firmware Board
    _hw: dict[str, Any] = field(default_factory=dict)
    _ctx: dict[str, contextvars.Context] = field(default_factory=dict)
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _frames: list[tuple[str, bytes]] = field(default_factory=list)
    _k: int = 0

    def __post_init__(self) -> None:
        self._app = firmware()
        self.clock = StepClock(self.sc.start)
        cfg = dict(BOARD_CFG, reading_s=self.sc.reading_s, interval_s=self.sc.market.interval_s)
        fakes = importlib.import_module("fakes.hardware")
        for h in self.sc.homes:
            d = self.workdir / "boards" / h.member
            d.mkdir(parents=True, exist_ok=True)
            ctx = contextvars.copy_context()
            ctx.run(_DIR.set, d)
            self._ctx[h.member] = ctx
            ph = self.physics[h.member]
            start = self.sc.start

            def power(now: int, ph: HomePhysics = ph, start: int = start) -> int:
                return ph.net(min(max((now - start) // STEP_S, 0), len(ph.load_w) - 1))

            self._hw[h.member] = fakes.FakeHardware(cfg, power)
            self._fw[h.member] = ctx.run(self._make, h.board, cfg)
            b = self._fw[h.member]
            self.boards[h.member] = _Info(b.id, str(cfg["type"]), b.key)
            self.sent[b.id] = {}
            self.power[h.member] = []

    def _make(self, board_id: str, cfg: dict[str, Any]) -> Any:
        settings = {
            "board": board_id,
            "grid": self.grid,
            "coordinator_key": self.coordinator_key.hex(),
            "broker": {"host": self.address.host, "port": self.address.port},
        }
        member = board_id[2:]
        b = self._app.Board(json.loads(json.dumps(cfg)), settings, self._hw[member], self.clock)
        orig = b.reading

        def reading(now: int) -> bytes:
            fr: bytes = orig(now)
            r = messages.decode(bytes(frame.split(fr)[0]))
            assert isinstance(r, messages.Reading)
            self.sent[board_id][r.seq] = SentReading(r.ts, r.e_imp, r.e_exp)
            self._frames.append((b.t_reading, fr))
            del self._frames[:-200]
            return fr

        b.reading = reading
        return b

    @property
    def delivered(self) -> int:
        return sum(b.sent for b in self._fw.values())

    async def start(self, addr: BrokerAddress) -> None:
        for m in self._fw:
            self._spawn(m)
        await self._settle()

    def _spawn(self, m: str) -> None:
        b = self._fw[m]
        self._tasks[m] = asyncio.get_running_loop().create_task(b.run(), context=self._ctx[m])

    async def _settle(self) -> None:
        """Wait until every board task sleeps on the clock again (its step's work done)."""
        want = TASKS_PER_BOARD * len(self._tasks)
        deadline = time.monotonic() + SETTLE_S
        while self.clock.parked < want and time.monotonic() < deadline:
            await asyncio.sleep(0.0005)
        for b in self._fw.values():
            seqs = self.sent[b.id]
            if seqs and not len(b.spool):
                self.newest[b.id] = max(seqs)

    async def step(self, ts: int) -> None:
        k = (ts - self.sc.start) // STEP_S
        for m, ph in self.physics.items():
            self.power[m].append(ph.net(min(k, len(ph.load_w) - 1)))
        self.clock.advance(ts)
        await self._settle()

    async def flush(self, now: int) -> None:
        return None  # the boards publish themselves

    async def drain(self) -> None:
        await self._settle()
        for b in self._fw.values():
            seqs = sorted(self.sent[b.id])
            self.queued[b.id] = set(seqs[len(seqs) - len(b.spool) :]) if len(b.spool) else set()

    def go_offline(self, member: str, until: int) -> None:
        raise SimError("board_offline is not modelled for firmware boards; use boards = virtual")

    async def reboot(self, member: str, ts: int) -> None:
        task = self._tasks.pop(member)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        old = self._fw[member]
        cfg = old.cfg
        self._fw[member] = self._ctx[member].run(self._make, old.id, cfg)
        self._spawn(member)
        await self._settle()

    async def attack(self, forged: int, replayed: int, moved: int, ts: int, rng: random.Random) -> None:
        boards = {m: attacks.Target(b.id, b.regs.seq, b.regs.e_imp) for m, b in self._fw.items()}
        out = attacks.frames(self.grid, boards, self._frames, forged, replayed, moved, ts, rng)
        await attacks.send(self.address, out)
        self.attacks += len(out)

    async def stop(self) -> None:
        for b in self._fw.values():
            b.stop = True
        for t in self._tasks.values():
            t.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()), timeout=5)
        self._tasks.clear()
