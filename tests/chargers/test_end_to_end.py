"""Off-the-shelf devices end to end: Mosquitto, ``peergrid coordinator run`` as a process with a
pilot grid (``[delivery] grid``) and the OCPP central system (``[ocpp]``), and three real protocol
peers:

- a wallbox: the ``ocpp`` package's own OCPP 1.6J ChargePoint client over a loopback WebSocket,
  with a car behind it that charges at the current of the newest charging profile it accepted and
  reports its energy register, power and state of charge in MeterValues;
- the EV member's meter board: a virtual board (sim/board.py) signing readings of the house's base
  load plus the car, the wallbox being behind the meter;
- the PV member's meter board: the real firmware on the MicroPython unix port (code from a ROMFS
  image), whose fake Modbus slave holds a SunSpec model map (firmware/fakes/sunspec.py): a 5 kW
  inverter whose output follows its model-123 WMaxLimPct, as the board's fake meter sees it.

Members, boards, devices and the charger's binding are set with the ``peergrid`` CLI as an operator
would; the wallbox authenticates with the password ``charger bind`` printed (HTTP Basic, OCPP
security profile 1). Both members are on one feeder: the EV buys the PV member's forecast export in
the ex-ante market, more than the EV house's connection carries. The congestion comes from the pilot grid's
connection limits: the EV house may import 3.5 kW, the PV house export 4 kW. Checked: the PV export
limit reached the inverter (model 123 WMaxLimPct and WMaxLim_Ena written, the board's signed Ack
reports it applied, the board's signed readings show the export held), the EV limit reached the
wallbox as a TxProfile with the limited current (accepted), and the car had what it needed at
departure, from the profiles' limits and from the EV board's signed readings. Intervals of 60 s
(the shortest the config allows; the coordinator runs on the wall clock): about six minutes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import pytest
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as res16
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from coordinator.chargers.central import on
from coordinator.chargers.service import GRACE_S
from coordinator.ledger import Ledger
from coordinator.ledger.queries import chargers as cq
from coordinator.provision import boardfile
from coordinator.service.broker import free_port
from coordinator.service.mqtt import Connection
from protocol import crypto, frame, messages, topics
from sim.board import VirtualBoard
from tests.broker import Mosquitto
from tests.mpy import FIRMWARE_HEAP_NOW, mpy_env
from tests.romfs import build_image

ROOT = Path(__file__).resolve().parent.parent.parent
GRID = "g1"
LEN = 60
READ_S = 5
SEED = b"\x42" * 32  # the coordinator's key
EV_SEED = b"\x0e" * 32  # the EV house's virtual board
PV_SEED = b"\x50" * 32  # the firmware board's key.bin (a board makes its own; given here to enrol it)

BASE_W = 1_000  # the EV house without the car
IMPORT_LIMIT_W = 3_500  # the EV house's connection in the pilot grid
EV_MAX_W = 7_360  # 32 A on one phase
CAR_MWH = 2_000_000  # a small battery keeps the run short: 1 % is 20 Wh
START_SOC = 800  # per-mille at plug-in
TARGET_SOC = 850  # by departure: 100 Wh to charge
NEED_MWH = CAR_MWH * (TARGET_SOC - START_SOC) // 1000

PV_W = 5_000  # what the inverter would make unlimited (its model 121 WMax is 5000 W too)
PV_LOAD_W = 300
EXPORT_LIMIT_W = 4_000  # the PV house's connection in the pilot grid
WMAX = 5_000

GRID_TOML = f"""
name = "e2e"
[[bus]]
name = "MV"
vn_kv = 20.0
[[bus]]
name = "LV0"
vn_kv = 0.4
[[bus]]
name = "A1"
vn_kv = 0.4
[[transformer]]
name = "T1"
hv_bus = "MV"
lv_bus = "LV0"
std_type = "0.25 MVA 20/0.4 kV"
[[line]]
name = "LV0-A1"
from_bus = "LV0"
to_bus = "A1"
length_m = 100
std_type = "NAYY 4x150 SE"
[[connection]]
board = "b-ev"
bus = "A1"
import_limit_w = {IMPORT_LIMIT_W}
[[connection]]
board = "b-pv"
bus = "A1"
export_limit_w = {EXPORT_LIMIT_W}
pv_w = {PV_W}
"""

BOARD_TOML = """
type = "esp32-sunspec"
[frontend]
chip = "atm90e32"
spi = 2
sck = 18
mosi = 23
miso = 19
cs = 5
meter_constant = 3200
line_hz = 50
[modbus]
uart = 1
tx = 32
rx = 33
baud = 9600
[pv]
max_export_w = 5000
sunspec = 1
[limits]
import_w = 11000
export_w = 5000
"""

# The firmware board: app.Board as main.run starts it, on a board clock that is the wall clock (the
# coordinator's), with the fake PZEM-004T metering the house: its load less what the inverter makes,
# which is PV_W unless model 123 limits it (WMaxLimPct in 0.01 % of WMax, WMaxLim_Ena). Each change
# of the inverter's limit registers is logged with the board time; a file named "stop" ends the run.
FIRMWARE_RUN = """
import asyncio, os, time
import app
from fakes import sunspec as fake
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
seen = [None]
def power(now):
    s = hw.slave
    pct = s.regs[fake.at(s, 123, 3)]
    ena = s.regs[fake.at(s, 123, 7)]
    if seen[0] != (pct, ena):
        seen[0] = (pct, ena)
        with open("inverter.log", "a") as f:
            f.write("%%d %%d %%d\\n" %% (now, pct, ena))
    made = min(%(pv)d, %(wmax)d * pct // 10000) if ena else %(pv)d
    return %(load)d - made
hw = FakeHardware(cfg, power)
b = app.Board(cfg, settings, hw, SimClock(int(time.time()), 1))
fake.load(hw.slave, models=(1, 103, 121, 123), wmax=%(wmax)d)
async def watch():
    while not b.stop:
        try:
            os.stat("stop")
            b.stop = True
        except OSError:
            await asyncio.sleep(1)
async def main():
    asyncio.create_task(watch())
    await b.run()
asyncio.run(main())
print("RESULT", b.sent, b.act.faults, hw.ss["pv"].faults, b.orders.rejected)
"""


def cli(*args: str, cfg: Path) -> str:
    p = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", *args, "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p.stdout


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass
class Car:
    """The car behind the wallbox: it draws what the newest accepted charging profile allows (the
    wallbox's largest current before any), until full."""

    stored: int = CAR_MWH * START_SOC // 1000  # mWh
    register_mwh: int = 0  # the wallbox's energy register
    plugged: bool = False
    profiles: list[dict[str, Any]] = field(default_factory=list)
    received: list[float] = field(default_factory=list)  # when each profile came
    history: list[tuple[float, int, float]] = field(default_factory=list)  # (time, mWh stored, A)

    def current_a(self, t: float) -> float:
        if not self.plugged or self.stored >= CAR_MWH:
            return 0.0
        if not self.profiles:
            return EV_MAX_W / 230
        p = self.profiles[-1]
        sched = p["charging_schedule"]
        t0 = epoch(sched["start_schedule"])
        a = float(sched["charging_schedule_period"][0]["limit"])
        for period in sched["charging_schedule_period"]:
            if t >= t0 + period["start_period"]:
                a = float(period["limit"])
        return a

    def charge(self, t0: float, t1: float) -> int:
        """Charge from t0 to t1 at the current allowed at t0; the power (W)."""
        a = self.current_a(t0)
        w = round(a * 230)
        mwh = min(CAR_MWH - self.stored, round(w * (t1 - t0) / 3.6))
        self.stored += mwh
        self.register_mwh += mwh
        self.history.append((t1, self.stored, a))
        return w

    def soc_pct(self) -> int:
        return self.stored * 100 // CAR_MWH  # what the car tells: whole percent, rounded down


class Wallbox(Cp16):  # type: ignore[misc]
    car: Car

    @on("SetChargingProfile")
    def set_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any]) -> Any:
        self.car.profiles.append(cs_charging_profiles)
        self.car.received.append(time.time())
        return res16.SetChargingProfile("Accepted")


def meter_values(car: Car, power_w: int, tx: int) -> call16.MeterValues:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    values = [
        {"value": str(car.register_mwh // 1000), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": str(power_w), "measurand": "Power.Active.Import", "unit": "W"},
        {"value": str(car.soc_pct()), "measurand": "SoC", "unit": "Percent"},
    ]
    return call16.MeterValues(
        connector_id=1, meter_value=[{"timestamp": stamp, "sampledValue": values}], transaction_id=tx
    )


def firmware_board(directory: Path, mqtt_port: int) -> subprocess.Popen[str]:
    directory.mkdir()
    cfg = boardfile.compact(tomllib.loads(BOARD_TOML))
    cfg.update(reading_s=READ_S, interval_s=LEN, status_s=LEN)
    (directory / "board.json").write_text(json.dumps(cfg))
    settings = {
        "board": "b-pv",
        "grid": GRID,
        "coordinator_key": crypto.SigningKey(SEED).public.hex(),
        "broker": {"host": "127.0.0.1", "port": mqtt_port},
    }
    (directory / "settings.json").write_text(json.dumps(settings))
    (directory / "key.bin").write_bytes(PV_SEED)
    code = FIRMWARE_RUN % {"pv": PV_W, "wmax": WMAX, "load": PV_LOAD_W}
    console: IO[str] = open(directory / "console.log", "w")  # noqa: SIM115 (closed with the process)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.romfs", str(build_image()), FIRMWARE_HEAP_NOW, "-c", code],
            cwd=directory,
            env=dict(mpy_env(romfs=True), PYTHONPATH=str(ROOT)),
            stdout=console,
            stderr=subprocess.STDOUT,
            text=True,
        )
    finally:
        console.close()


def stop_process(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


@pytest.mark.timeout(900)
def test_congestion_limits_the_ev_by_ocpp_profile_and_curtails_a_sunspec_inverter(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    coord = crypto.SigningKey(SEED)
    (tmp_path / "coordinator.key").write_bytes(SEED)
    (tmp_path / "grid.toml").write_text(GRID_TOML)
    ocpp_port = free_port()
    cfg = tmp_path / "coordinator.toml"
    cfg.write_text(
        f'[coordinator]\ngrid = "{GRID}"\nledger = "ledger.db"\nkey = "coordinator.key"\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {mosquitto.port}\n'
        f"[market]\ninterval_s = {LEN}\nsettle_delay_s = 5\n"
        f'[delivery]\ngrid = "grid.toml"\n'
        f'[ocpp]\nlisten = "127.0.0.1:{ocpp_port}"\n'
    )
    ev_board = VirtualBoard(GRID, "b-ev", EV_SEED, lambda t: BASE_W)
    pv_key = crypto.SigningKey(PV_SEED)
    # the operator: members on one feeder, their boards, the PV, the charger's binding
    for member, board, key, kind in (
        ("eve", "b-ev", ev_board.key, "virtual"),
        ("sol", "b-pv", pv_key, "esp32-sunspec"),
    ):
        cli("members", "add", "--id", member, "--name", member.title(), "--feeder", "f1", cfg=cfg)
        cli(
            "board", "enroll", "--member", member, "--board", board, "--pubkey", key.public.hex(),
            "--type", kind, cfg=cfg,
        )  # fmt: skip
    assert "in force from" in cli(
        "members", "set", "--id", "sol", "--pv", '{"kwp": 5}', "--by", "e2e", cfg=cfg
    )
    bound = cli("charger", "bind", "CP1", "eve", cfg=cfg)
    m = re.search(r"^  password +(\S+)$", bound, re.M)
    assert m is not None and f"ws://127.0.0.1:{ocpp_port}/" in bound, bound
    wallbox_auth = "Basic " + base64.b64encode(f"CP1:{m.group(1)}".encode()).decode()
    # eve's car: plugged in half an interval into the first interval both boards meter whole, to
    # leave 4.5 intervals later (the coordinator runs on the wall clock: the times are the clock's)
    first = int(time.time() + 15) // LEN * LEN + LEN
    times = {"plug": first + GRACE_S + 2, "departure": first + 5 * LEN}
    ev = {
        "kind": "ev",
        "capacity_mwh": CAR_MWH,
        "max_charge_w": EV_MAX_W,
        "phases": 1,
        "target_soc": TARGET_SOC,
        "departure": time.strftime("%H:%M", time.gmtime(times["departure"])),
    }
    got = cli("members", "set", "--id", "eve", "--storage", json.dumps(ev), "--by", "e2e", cfg=cfg)
    assert "in force from" in got, got

    logs = tmp_path / "coordinator.log"
    with open(logs, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "coordinator.cli", "coordinator", "run", "--config", str(cfg)],
            cwd=tmp_path,
            env=dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1"),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    fw = firmware_board(tmp_path / "pv-board", mosquitto.port)
    car = Car()

    async def ev_house(stop: asyncio.Event) -> None:
        """The wallbox and the EV house's board, stepped each second."""
        for _ in range(200):  # until the central system listens
            try:
                ws = await connect(
                    f"ws://127.0.0.1:{ocpp_port}/ocpp/CP1",
                    subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                    additional_headers={"Authorization": wallbox_auth},
                )
                break
            except (OSError, InvalidStatus):
                assert proc.poll() is None, logs.read_text()
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the central system did not come up")
        cp = Wallbox("CP1", ws)
        cp.car = car
        task = asyncio.create_task(cp.start())
        await cp.call(call16.BootNotification(charge_point_model="Box", charge_point_vendor="peergrid"))
        tx = 0
        async with Connection(mosquitto.address, "e2e-ev-board") as conn:
            await conn.publish(*ev_board.enrolment(int(time.time())))
            last = time.time()
            n = 0
            while not stop.is_set():
                await asyncio.sleep(1 - time.time() % 1)
                now = time.time()
                if not car.plugged and now >= times.get("plug", 2**62):
                    car.plugged = True
                    r = await cp.call(
                        call16.StartTransaction(
                            connector_id=1, id_tag="EVE", meter_start=car.register_mwh // 1000,
                            timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        )
                    )  # fmt: skip
                    tx = r.transaction_id
                    await cp.call(meter_values(car, 0, tx))
                w = car.charge(last, now)
                ev_board.advance(int(now), BASE_W + w)
                last = now
                n += 1
                if n % READ_S == 0:
                    await conn.publish(*ev_board.reading(int(now), BASE_W + w))
                    if car.plugged:
                        await cp.call(meter_values(car, w, tx))
        await ws.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await task

    async def body() -> None:
        stop = asyncio.Event()
        house = asyncio.create_task(ev_house(stop))
        try:
            departure = times["departure"]
            # run until the EV board's readings past the departure are in the ledger
            deadline = time.monotonic() + departure - time.time() + 120
            while True:
                assert proc.poll() is None and fw.poll() is None, logs.read_text()
                if house.done():
                    house.result()
                if time.time() > departure + 2 * READ_S:
                    with Ledger.open(tmp_path / "ledger.db") as led:
                        r = led.latest_reading("b-ev")
                    if r is not None and r.ts >= departure:
                        break
                assert time.monotonic() < deadline, "the EV board's readings did not reach the ledger"
                await asyncio.sleep(1)
        finally:
            stop.set()
            await house

    try:
        asyncio.run(body())
    finally:
        (tmp_path / "pv-board" / "stop").write_text("")  # the board stops cleanly within a second
        with contextlib.suppress(subprocess.TimeoutExpired):
            fw.wait(20)
        fw_rc = stop_process(fw)
        rc = stop_process(proc)
    console = (tmp_path / "pv-board" / "console.log").read_text()
    log = logs.read_text()
    assert rc == 0, log
    assert fw_rc == 0 and "RESULT" in console, console
    sent_n, _, _, refused = (int(x) for x in console.split("RESULT")[1].split()[:4])
    assert sent_n >= 5 * LEN // READ_S and refused == 0, console
    plug, departure = times["plug"], times["departure"]
    verifier = crypto.Verifier(coord.public)
    # what the coordinator stored, read as an auditor would (read-only)
    db = sqlite3.connect(f"file:{tmp_path / 'ledger.db'}?mode=ro", uri=True)
    try:
        redispatch = {
            (iv, board, kind): (delta, setpoint, reason)
            for iv, board, kind, delta, setpoint, reason in db.execute(
                "SELECT interval, board_id, kind, delta_w, setpoint, reason FROM redispatches"
            )
        }
        orders = {
            (board, iv): (
                frame.open_frame(topics.board_topic(GRID, board, "order"), bytes(fr), lambda m: verifier),
                ack_status,
                None if ack is None else bytes(ack),
            )
            for board, iv, fr, ack_status, ack in db.execute(
                "SELECT board_id, interval, frame, ack_status, ack_frame FROM board_orders"
            )
        }
        pv_flows = {
            iv: (e_exp1 - e_exp0, e_imp1 - e_imp0)
            for iv, e_imp0, e_imp1, e_exp0, e_exp1 in db.execute(
                "SELECT interval, e_imp0, e_imp1, e_exp0, e_exp1 FROM board_deliveries WHERE board_id='b-pv'"
            )
        }
    finally:
        db.close()
    with Ledger.open(tmp_path / "ledger.db") as led:
        profiles = {iv: (ma, kind, status) for iv, ma, kind, status in cq.profiles(led, "CP1")}
        ev_at = {t: led.register_at("b-ev", t) for t in (plug, departure)}
        rejections = led.rejections()
    # -- the SunSpec inverter curtailed export on order --------------------------------------
    pv_limited = sorted(iv for (iv, board, kind) in redispatch if board == "b-pv" and kind == "pv_limit")
    assert pv_limited, redispatch
    for iv in pv_limited:
        delta, setpoint, reason = redispatch[(iv, "b-pv", "pv_limit")]
        assert "b-pv" in reason and setpoint <= EXPORT_LIMIT_W and delta < 0, reason
        o, status, ack_frame = orders[("b-pv", iv)]
        assert isinstance(o, messages.Order) and o.pv_limit_w == setpoint
        assert ack_frame is not None, f"no Ack for the order of {iv}"
        ack = frame.open_frame(
            topics.board_topic(GRID, "b-pv", "ack"), ack_frame, lambda m: crypto.Verifier(pv_key.public)
        )
        assert isinstance(ack, messages.Ack) and ack.status == messages.ST_APPLIED == status, ack
        # what the inverter really took: WMaxLimPct in 0.01 % of WMax, rounded down
        assert ack.pv_limit_w == setpoint * 10_000 // WMAX * WMAX // 10_000 >= setpoint - 1, ack
    inverter = [
        tuple(int(x) for x in line.split())
        for line in (tmp_path / "pv-board" / "inverter.log").read_text().split("\n")
        if line
    ]
    written = {(pct, ena) for _, pct, ena in inverter}
    for iv in pv_limited:
        setpoint = redispatch[(iv, "b-pv", "pv_limit")][1]
        assert (setpoint * 10_000 // WMAX, 1) in written, (setpoint, inverter)
    assert inverter[0][1:] == (10_000, 0)  # unlimited until the first order
    # the export the board signed: held within the limit in a curtailed interval
    held = [iv for iv in pv_limited if iv in pv_flows]
    assert held, (pv_limited, pv_flows)
    for iv in held:
        exp_w = pv_flows[iv][0] * 36 // (10 * LEN)
        assert exp_w <= EXPORT_LIMIT_W + 100, (iv, exp_w)
    # -- the EV's limit reached the wallbox as a charging profile --------------------------------
    ev_limited = sorted(iv for (iv, board, kind) in redispatch if board == "b-ev" and kind == "ev")
    assert ev_limited, redispatch
    limited = [redispatch[(iv, "b-ev", "ev")] for iv in ev_limited]
    for iv in ev_limited:
        delta, setpoint, reason = redispatch[(iv, "b-ev", "ev")]
        # the house's expected import was beyond its connection: the EV takes the excess (less import)
        name, value, _, limit = reason.split(";")[0].split()
        assert name == "import:b-ev" and float(limit) == IMPORT_LIMIT_W, reason
        assert 0 < float(value) - IMPORT_LIMIT_W <= delta <= float(value) - IMPORT_LIMIT_W + 1, reason
        assert setpoint < EV_MAX_W * 1000 // 230
        o, _, _ = orders[("b-ev", iv)]
        assert isinstance(o, messages.Order) and o.ev_ma == setpoint
        # the wallbox was told that current (below the IEC 61851 minimum of 6 A: none) and took it
        assert profiles[iv] == (setpoint if setpoint >= 6_000 else 0, "TxProfile", "Accepted"), (iv, profiles)
    tx = [(t, p) for t, p in zip(car.received, car.profiles, strict=True) if p.get("transaction_id")]
    sent = [float(p["charging_schedule"]["charging_schedule_period"][0]["limit"]) for _, p in tx]
    told = {max(setpoint, 0) // 100 / 10 if setpoint >= 6_000 else 0.0 for _, setpoint, _ in limited}
    assert told <= set(sent), (told, sent)
    # the session's first profile was the one of the interval it started in (not the next one's)
    first_tx = tx[0][1]
    assert first_tx["charging_profile_purpose"] == "TxProfile", first_tx
    assert epoch(first_tx["charging_schedule"]["start_schedule"]) // LEN == plug // LEN, first_tx
    # -- the car's need met by its departure -----------------------------------------------------
    at_departure = [mwh for t, mwh, _ in car.history if t <= departure][-1]
    assert at_departure - CAR_MWH * START_SOC // 1000 >= NEED_MWH, car.history
    before, after = ev_at[plug], ev_at[departure]
    assert before is not None and after is not None
    # the board's signed import from plug-in to departure, less the house, is what the car took
    car_mwh = (after.e_imp - before.e_imp) - BASE_W * (after.ts - before.ts) * 10 // 36
    assert car_mwh >= NEED_MWH, (before, after)
    assert not {k for k in rejections if k.startswith("ocpp_")}, rejections
