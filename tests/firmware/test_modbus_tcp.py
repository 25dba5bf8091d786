"""Modbus TCP to the board's inverters on the real MicroPython unix port (drivers/modbus_tcp.py),
against a real, independent Modbus TCP server (pymodbus) in this test process holding a SunSpec
model map laid out and valued as firmware/fakes/sunspec.py lays out the RTU fake's: a board booted
from a board file with ``[modbus] host`` finds the models over TCP, curtails PV and sets the
battery on a signed order (read back from the server's datastore), and reads state of charge and
power into its signed reading, all on one kept-open connection; an exception reply raises
ModbusError with its code; a restarted server is found again; a server that accepts and never
answers times out while the event loop keeps running (counted in ticks of a task beside it); a
wrong transaction id, a reply cut off or too short, a write not echoed are FrameErrors (small raw
servers stand in for those peers); a refused connection is a BusTimeout."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
import types
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from protocol import crypto, messages
from tests.firmware import test_sunspec as sunspec
from tests.firmware.test_link import free_port
from tests.mpy import FIRMWARE, FIRMWARE_HEAP_NOW, run_micropython

COORD = crypto.SigningKey(bytes(range(32)))
T = 1_750_000_200


def _fake_sunspec() -> types.ModuleType:
    """firmware/fakes/sunspec.py (plain Python, no imports), loaded on CPython: the map's layout
    and values come from the same code as the RTU fake slave's."""
    spec = importlib.util.spec_from_file_location("fake_sunspec", FIRMWARE / "fakes" / "sunspec.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


FAKE = _fake_sunspec()


class Loop:
    """An asyncio loop in a thread for the servers, while the MicroPython process runs."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(20)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.stop()


class SunSpecServer:
    """pymodbus serving a SunSpec map as unit 1 (models 1, 103, 121, 123, 124 from 40000);
    ``restart`` closes it with its connections, as an inverter that reboots, and serves a fresh
    map on the same port."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.dev = types.SimpleNamespace(regs={}, models={})
        self.srv: ModbusTcpServer | None = None
        self.port = 0
        self.connects = 0
        self.starts = 0
        self.requests: list[bytes] = []  # every request frame received (MBAP header and PDU)

    def at(self, model: int, offset: int) -> int:
        return int(FAKE.at(self.dev, model, offset))

    def _traced(self, up: bool) -> None:
        self.connects += up

    def _packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self.requests.append(bytes(data))
        return data

    async def _start(self, changes: dict[int, int]) -> None:
        FAKE.load(self.dev)
        regs = self.dev.regs
        regs.update(changes)
        lo, hi = min(regs), max(regs)
        assert sorted(regs) == list(range(lo, hi + 1))  # one block of registers
        values = [regs[r] & 0xFFFF for r in range(lo, hi + 1)]
        device = SimDevice(id=1, simdata=[SimData(address=lo, values=values, datatype=DataType.REGISTERS)])
        self.srv = ModbusTcpServer(
            device, address=("127.0.0.1", self.port), trace_connect=self._traced, trace_packet=self._packet
        )
        await self.srv.serve_forever(background=True)
        assert self.srv.transport is not None
        self.port = self.srv.transport.sockets[0].getsockname()[1]
        self.starts += 1

    def start(self, **changes: int) -> SunSpecServer:
        """``changes``: "model_offset" -> value, e.g. ``m124_6=640`` (ChaState)."""
        at = {}
        for k, v in changes.items():
            m, o = k[1:].split("_")
            at[(int(m), int(o))] = v
        FAKE.load(self.dev)  # the layout, to place the changes
        self.loop.run(self._start({self.at(m, o): v for (m, o), v in at.items()}))
        return self

    def stop(self) -> None:
        assert self.srv is not None
        self.loop.run(self.srv.shutdown())

    def get(self, model: int, offset: int) -> int:
        assert self.srv is not None
        v = self.loop.run(self.srv.async_getValues(1, 3, self.at(model, offset), 1))[0]
        return int(v - 0x10000 if v & 0x8000 else v)


class Control:
    """A line server the MicroPython script calls between two transactions: ``restart`` restarts
    the SunSpec server (a fresh map with ChaState 64.0 %), answers ``ok``."""

    def __init__(self, loop: Loop, ss: SunSpecServer) -> None:
        self.ss = ss
        self.port = 0

        async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            if (await r.readline()).strip() == b"restart":
                assert ss.srv is not None
                await ss.srv.shutdown()
                await ss._start({ss.at(124, 6): 640})
                w.write(b"ok\n")
                await w.drain()
            w.close()

        async def start() -> int:
            s = await asyncio.start_server(serve, "127.0.0.1", 0)
            return int(s.sockets[0].getsockname()[1])

        self.port = loop.run(start())


class RawPeer:
    """A Modbus TCP peer that misbehaves as ``mode`` says: ``silent`` (takes the request, never
    answers), ``tid`` (answers with another transaction id), ``cut`` (9 bytes of an 11-byte
    reply, then closes), ``short`` (a read reply whose length field gives one data byte),
    ``noecho`` (a write answered with another value, a write of two registers with quantity 3).
    Counts connections and requests, keeps the last request."""

    def __init__(self, loop: Loop, mode: str) -> None:
        self.mode = mode
        self.conns = self.requests = 0
        self.last = b""

        async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.conns += 1
            try:
                while True:
                    q = await r.readexactly(12)
                    tid, unit, fc = (q[0] << 8) | q[1], q[6], q[7]
                    if fc == 16:  # byte count and values follow
                        q += await r.readexactly(1)
                        q += await r.readexactly(q[12])
                    self.requests += 1
                    self.last = q
                    if mode == "silent":
                        continue
                    if mode == "tid":
                        tid = (tid + 1) & 0xFFFF
                    if fc == 6:
                        pdu = bytes(q[7:10]) + bytes((q[10] ^ 1 if mode == "noecho" else q[10], q[11]))
                    elif fc == 16:
                        pdu = bytes(q[7:11]) + bytes((q[11] ^ 1 if mode == "noecho" else q[11],))
                    elif mode == "short":
                        pdu = bytes((fc, 2, 0x12))
                    else:
                        pdu = bytes((fc, 2, 0x12, 0x34))
                    reply = bytes((tid >> 8, tid & 0xFF, 0, 0, 0, len(pdu) + 1, unit)) + pdu
                    if mode == "cut":
                        w.write(reply[:9])
                        await w.drain()
                        break
                    w.write(reply)
                    await w.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass  # the client closed the connection
            w.close()

        async def start() -> int:
            s = await asyncio.start_server(serve, "127.0.0.1", 0)
            return int(s.sockets[0].getsockname()[1])

        self.port = loop.run(start())


# --- a whole board, from its board file, on Modbus TCP ---

BOARD_TOML = """
type = "esp32-sunspec-tcp"
[frontend]
chip = "pzem004t"
uart = 2
tx = 17
rx = 16
[modbus]
host = "127.0.0.1"
port = PORT
timeout_ms = 1000
[pv]
max_export_w = 5000
sunspec = 1
[battery]
max_charge_w = 3300
max_discharge_w = 3300
sunspec = 1
[limits]
import_w = 11000
export_w = 5000
"""


def board(tmp_path: Path, port: int, toml: str = BOARD_TOML) -> None:
    """The board's files from its board file (through the coordinator's checks), and an order
    (tests/firmware/test_sunspec.py's)."""
    sunspec.board(tmp_path, toml.replace("PORT", str(port)))
    cfg = json.loads((tmp_path / "board.json").read_text())
    assert cfg["modbus"] == {"host": "127.0.0.1", "port": port, "timeout_ms": 1000}


BOARD = (
    sunspec.PRELUDE
    + r"""
ss = hw.ss["pv"]
out = [[type(hw.mb).__name__, hw.slave is None]]
out.append(reading(1750000010))  # discovery over TCP, then state of charge and power
out.append([ss.ok, ss.wmax, ss.wcha, hw.ss["battery"] is ss])
out.append(order())  # PV export limit 2000 W of WMax 5000 W; battery discharge 1650 W of 3300 W
out.append(reading(1750000020))
print("RESULT", out)
"""
)


def test_a_board_finds_sunspec_over_tcp_and_executes_a_signed_order(tmp_path: Path, loop: Loop) -> None:
    srv = SunSpecServer(loop).start(m103_12=1650)  # the inverter's AC power out: the battery discharging
    board(tmp_path, srv.port)
    out = run_micropython(BOARD, heap=FIRMWARE_HEAP_NOW, cwd=tmp_path).stdout
    got = eval(out.split("RESULT")[1])
    assert got[0] == ["ModbusTcp", True]  # the TCP client, no RS-485 fake slave
    assert got[1] == [500, -1650]  # ChaState 50.0 % -> 500 per-mille; W out 1650 -> discharging
    assert got[2] == [True, 5000, 3300, True]  # WMax from model 121, WChaMax from 124: one device
    assert got[3] == [messages.ST_APPLIED, -1650, 2000]
    # what the server's datastore holds now
    assert [srv.get(123, 3), srv.get(123, 7)] == [4000, 1]  # WMaxLimPct 40.00 %, WMaxLim_Ena
    assert [srv.get(124, 3), srv.get(124, 10)] == [2, 500]  # StorCtl_Mod discharge, OutWRte 50.0 %
    assert got[4] == [500, -1650]
    assert srv.connects == 1  # discovery, the order's writes and the reads on one kept connection


HAND_LISTED = r"""
import asyncio
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
hw = FakeHardware(cfg, lambda now: -3000)
b = app.Board(cfg, settings, hw, SimClock(1750000000, 1))
out = [asyncio.run(hw.battery_state())]
out.append(asyncio.run(b.act.apply(-1650, None, None, 0)))
print("RESULT", out)
"""


def test_hand_listed_registers_over_tcp(tmp_path: Path, loop: Loop) -> None:
    # no SunSpec: the board file's registers, their addr the unit id, read and written over TCP
    srv = SunSpecServer(loop).start(m103_12=1650)
    soc, p, rate = srv.at(124, 6), srv.at(103, 12), srv.at(124, 10)
    toml = BOARD_TOML.split("[pv]")[0] + (
        "[battery]\nmax_charge_w = 3300\nmax_discharge_w = 3300\n"
        f"modbus = {{ addr = 1, reg = {rate}, scale_w = 10 }}\n"
        f"soc = {{ reg = {soc}, full = 1000 }}\npower = {{ reg = {p}, scale_w = -1 }}\n"
        "[limits]\nimport_w = 11000\nexport_w = 5000\n"
    )
    board(tmp_path, srv.port, toml)
    got = eval(run_micropython(HAND_LISTED, heap=FIRMWARE_HEAP_NOW, cwd=tmp_path).stdout.split("RESULT")[1])
    assert got[0] == (500, -1650)  # ChaState in 0.1 %; the power register counts discharging as +
    assert got[1][0] == -1650 and srv.get(124, 10) == -165  # the setpoint in 10 W steps, signed
    assert srv.connects == 1


# --- the client alone: exception reply, restart, silence, malformed replies ---

CLIENT = r"""
import asyncio, socket
from drivers.modbus_tcp import ModbusTcp
from errors import BusTimeout, FrameError, ModbusError
async def attempt(coro):
    try:
        return await coro
    except ModbusError as e:
        return ["ModbusError", e.code_value]
    except FrameError as e:
        return ["FrameError", str(e)]
    except BusTimeout as e:
        return ["BusTimeout", str(e)]
def run(coro):
    return asyncio.run(attempt(coro))
out = []
"""

RESTART = (
    CLIENT
    + r"""
m = ModbusTcp("127.0.0.1", PORT, 1000)
out.append([run(m.read_register(1, 40000)), run(m.read_register(1, 40001))])  # "Su", "nS"
out.append(run(m.read_register(1, 30000)))  # nothing mapped there: the server's exception reply
out.append(run(m.read_register(1, SOC)))  # the connection goes on after an exception reply
s = socket.socket()
s.connect(socket.getaddrinfo("127.0.0.1", CONTROL)[0][-1])
s.send(b"restart\n")
out.append(s.recv(3))  # the server restarted: the kept connection is gone
s.close()
out.append(run(m.read_register(1, SOC)))  # from the new server, on a new connection
out.append(run(m.write_register(1, MODE, 1)))
out.append(run(m.read_register(1, 70000)))  # not a register: refused before anything is sent
print("RESULT", out)
"""
)


def test_exception_reply_and_a_restarted_server(tmp_path: Path, loop: Loop) -> None:
    srv = SunSpecServer(loop).start()
    ctl = Control(loop, srv)
    code = (
        RESTART.replace("PORT", str(srv.port))
        .replace("CONTROL", str(ctl.port))
        .replace("SOC", str(srv.at(124, 6)))
        .replace("MODE", str(srv.at(124, 3)))
    )
    got = eval(run_micropython(code, cwd=tmp_path).stdout.split("RESULT")[1])
    assert got[0] == [0x5375, 0x6E53]
    assert got[1] == ["ModbusError", 2]  # illegal data address
    assert got[2] == 500
    assert got[3] == b"ok\n" and srv.starts == 2
    assert got[4] == 640  # the restarted server's ChaState: found again at the next call
    assert got[5] is None and srv.get(124, 3) == 1  # StorCtl_Mod written on the new server
    assert got[6][0] == "FrameError"
    assert srv.connects == 2  # one before the restart, one after


SILENT = (
    CLIENT
    + r"""
import time
m = ModbusTcp("127.0.0.1", PORT, 500)
ticks = [0, 0]  # ticks, the longest gap between two beyond the 10 ms sleep (ms; printed only)
async def beside(coro):
    # a task beside the transaction: a tick per 10 ms sleep while the loop is free
    done = [False]
    async def beat():
        last = time.ticks_ms()
        while not done[0]:
            await asyncio.sleep_ms(10)
            t = time.ticks_ms()
            ticks[0] += 1
            ticks[1] = max(ticks[1], time.ticks_diff(t, last) - 10)
            last = t
    t = asyncio.create_task(beat())
    try:
        return await attempt(coro)
    finally:
        done[0] = True
        await t
async def main():
    out.append(await beside(m.read_register(1, 40000)))
    out.append(ticks[0])
    print("longest gap", ticks[1], "ms")
    out.append(await attempt(m.write_register(1, 40000, 5)))  # again, on a new connection
asyncio.run(main())
print("RESULT", out)
"""
)


def test_a_silent_server_times_out_and_the_loop_keeps_running(tmp_path: Path, loop: Loop) -> None:
    peer = RawPeer(loop, "silent")
    out = run_micropython(SILENT.replace("PORT", str(peer.port)), cwd=tmp_path).stdout
    got = eval(out.split("RESULT")[1])
    assert got[0][0] == "BusTimeout" and "did not answer" in got[0][1]
    # 500 ms of waiting is ~50 ticks of 10 ms when the loop is free, none when the wait holds it;
    # more than 100 would mean the wait outlasted two timeouts
    assert 20 <= got[1] <= 100, got[1]
    assert got[2][0] == "BusTimeout"
    assert peer.requests == 2 and peer.conns == 2  # closed after the timeout, reopened for the next


MALFORMED = (
    CLIENT
    + r"""
for port in PORTS:
    m = ModbusTcp("127.0.0.1", port, 1000)
    out.append([run(m.read_register(1, 40000)), run(m.write_register(1, 40000, 0x1234))])
print("RESULT", out)
"""
)


def test_malformed_replies_are_frame_errors_and_a_refused_connection_a_timeout(
    tmp_path: Path, loop: Loop
) -> None:
    peers = [RawPeer(loop, mode) for mode in ("tid", "cut", "short", "noecho")]
    refused = free_port()  # nothing listens there
    ports = [p.port for p in peers] + [refused]
    out = run_micropython(MALFORMED.replace("PORTS", repr(ports)), cwd=tmp_path).stdout
    got = eval(out.split("RESULT")[1])
    tid, cut, short, noecho, nobody = got
    assert [tid[0][0], tid[1][0]] == ["FrameError", "FrameError"] and "transaction" in tid[0][1]
    assert cut[0] == ["FrameError", "modbus tcp reply truncated"]
    assert [short[0][0], short[1]] == ["FrameError", None]  # the read's reply too short; the write fine
    assert noecho[0] == 0x1234 and noecho[1] == ["FrameError", "modbus reply does not echo the write"]
    assert [nobody[0][0], nobody[1][0]] == ["BusTimeout", "BusTimeout"]
    # after each malformed reply the connection is closed and the next request opens another;
    # the good read on "noecho" kept its connection for the write
    assert [p.conns for p in peers] == [2, 2, 2, 1]


WRITE16 = (
    CLIENT
    + r"""
m = ModbusTcp("127.0.0.1", PORT, 1000)
out.append(run(m.write_registers(1, REG, 0xFFFF, -2000)))  # an int32: -2000
out.append([run(m.read_register(1, REG)), run(m.read_register(1, REG + 1, True))])
out.append(run(m.write_registers(1, 30000, 1, 2)))  # nothing mapped there: the exception reply
out.append(run(m.write_registers(1, REG, 0, 1)))  # on the same connection
out.append([run(m.read_register(1, REG)), run(m.read_register(1, REG + 1))])
async def three():  # three tasks at once: each request whole, its values its own
    return await asyncio.gather(m.write_register(1, REG, 5), m.write_registers(1, REG, 1, 2),
                                m.write_registers(1, REG, 3, 4))
out.append(run(three()))
print("RESULT", out)
"""
)


def test_two_registers_written_in_one_function_16_request(tmp_path: Path, loop: Loop) -> None:
    srv = SunSpecServer(loop).start()
    reg = srv.at(124, 10)  # OutWRte, InWRte: two registers side by side in the map
    code = WRITE16.replace("PORT", str(srv.port)).replace("REG", str(reg))
    got = eval(run_micropython(code, cwd=tmp_path).stdout.split("RESULT")[1])
    assert got[0] is None
    assert got[1] == [0xFFFF, -2000]
    assert got[2] == ["ModbusError", 2]
    assert got[3] is None and got[4] == [0, 1]
    # one request each: MBAP length 11 (unit, function 16, start, quantity 2, byte count 4, values)
    first = srv.requests[0]
    assert first[2:] == bytes((0, 0, 0, 11, 1, 16, reg >> 8, reg & 0xFF, 0, 2, 4, 0xFF, 0xFF, 0xF8, 0x30))
    assert got[5] == [None, None, None] and [srv.get(124, 10), srv.get(124, 11)] == [3, 4]
    assert [q[7] for q in srv.requests] == [16, 3, 3, 16, 16, 3, 3, 6, 16, 16]
    assert [q[-4:] for q in srv.requests[-2:]] == [bytes((0, 1, 0, 2)), bytes((0, 3, 0, 4))]
    assert srv.connects == 1


def test_a_function_16_reply_with_another_quantity_is_a_frame_error(tmp_path: Path, loop: Loop) -> None:
    peer = RawPeer(loop, "noecho")
    code = CLIENT + (
        "m = ModbusTcp('127.0.0.1', PORT, 1000)\n"
        "out.append(run(m.write_registers(1, 40100, 0x1234, 0x5678)))\n"
        "out.append(run(m.write_registers(1, 40100, 0x1234, 0x5678)))\n"
        "print('RESULT', out)\n"
    ).replace("PORT", str(peer.port))
    got = eval(run_micropython(code, cwd=tmp_path).stdout.split("RESULT")[1])
    assert got == [["FrameError", "modbus reply does not echo the write"]] * 2
    assert peer.last[4:] == bytes((0, 11, 1, 16, 0x9C, 0xA4, 0, 2, 4, 0x12, 0x34, 0x56, 0x78))
    assert peer.requests == 2 and peer.conns == 2  # the connection closed after the bad reply
