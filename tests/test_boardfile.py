"""Board files: every shipped board converts, mistakes are named precisely, and the compact
form is what the firmware reads (checked on MicroPython with each front end faked)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from coordinator.provision import boardfile
from coordinator.provision.boardfile import BoardFileError
from tests.mpy import FIRMWARE_HEAP_NOW, run_micropython

TYPES = boardfile.board_types()


def test_three_real_board_types_ship() -> None:
    chips = {boardfile.load(p)["frontend"]["chip"] for p in TYPES.values()}
    assert len(TYPES) >= 3 and {"pzem004t", "atm90e32", "dsmr_p1"} <= chips


@pytest.mark.parametrize("name", sorted(TYPES))
def test_conversion_is_reproducible(name: str) -> None:
    a = boardfile.dumps(boardfile.load(TYPES[name]))
    assert a == boardfile.dumps(boardfile.load(TYPES[name]))
    assert json.loads(a)["type"] == name


def _raw(name: str) -> dict[str, Any]:
    return tomllib.loads(TYPES[name].read_text())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("frontend"), "frontend is required"),
        (lambda d: d["frontend"].update(chip="hlw8012"), "frontend.chip must be one of"),
        (lambda d: d["frontend"].update(sck=40), "frontend.sck must be an integer 0..39, got 40"),
        (lambda d: d["battery"].update(max_charge_w=-5), "battery.max_charge_w must be an integer"),
        (lambda d: d["safe"].update(bat_w=9999), "safe.bat_w must be an integer -3300..3300"),
        (lambda d: d["ev"].update(min_ma=4000), "ev.min_ma must be an integer 6000..80000"),
        (lambda d: d.pop("modbus"), "modbus is required for battery setpoints"),
        (lambda d: d["timing"].update(reading_s=7), "interval_s must be a multiple of timing.reading_s"),
        (lambda d: d.update(type="a b"), "type must be an identifier"),
        (lambda d: d["battery"]["soc"].pop("full"), "battery.soc.full is required"),
        (lambda d: d["battery"]["soc"].update(reg=70000), "battery.soc.reg must be an integer 0..65535"),
        (lambda d: d["battery"].update(soc=40110), "battery.soc must be a table"),
        (lambda d: d["battery"]["power"].update(scale_w=0), "battery.power.scale_w must not be 0"),
        (
            lambda d: d["battery"]["power"].update(scale_w=1000),
            "battery.power.scale_w must be an integer -100..100",
        ),
    ],
)
def test_mistakes_are_named(change: Any, message: str) -> None:
    d = _raw("circuitsetup-atm90e32")
    change(d)
    with pytest.raises(BoardFileError, match=message.replace(".", r"\.")):
        boardfile.compact(d, "x.toml")


def test_battery_reads_and_p1_staleness_in_the_compact_form() -> None:
    # the inverter's registers for what it reports: the setpoint's slave unless named otherwise
    bat = boardfile.load(TYPES["circuitsetup-atm90e32"])["battery"]
    assert bat["soc"] == {"addr": 1, "reg": 40110, "full": 1000}
    assert bat["power"] == {"addr": 1, "reg": 40111, "scale_w": 10}
    d = _raw("circuitsetup-atm90e32")
    d["battery"]["soc"] = {"addr": 7, "reg": 3, "full": 100}
    del d["battery"]["power"]
    bat = boardfile.compact(d, "x.toml")["battery"]
    assert bat["soc"] == {"addr": 7, "reg": 3, "full": 100} and "power" not in bat
    p1 = _raw("esp32-dsmr-p1")
    assert boardfile.compact(p1, "x.toml")["frontend"]["stale_s"] == 30
    del p1["frontend"]["stale_s"]
    assert boardfile.compact(p1, "x.toml")["frontend"]["stale_s"] == 30  # 3 x a DSMR 4's 10 s
    p1["frontend"]["stale_s"] = 1
    with pytest.raises(BoardFileError, match=r"frontend\.stale_s must be an integer 2\.\.3600"):
        boardfile.compact(p1, "x.toml")


def test_modbus_tcp_in_the_compact_form() -> None:
    # [modbus] names the inverter on the LAN instead of the RS-485 bus: a numeric address, the
    # port and each transaction's timeout (defaults 502 and 1000 ms); the units stay 1..247
    d = _raw("circuitsetup-atm90e32")
    d["modbus"] = {"host": "192.168.1.20"}
    cfg = boardfile.compact(d, "x.toml")
    assert cfg["modbus"] == {"host": "192.168.1.20", "port": 502, "timeout_ms": 1000}
    assert cfg["battery"]["modbus"]["addr"] == 1 and cfg["pv"]["modbus"]["addr"] == 2
    d["modbus"] = {"host": "10.0.0.7", "port": 1502, "timeout_ms": 300}
    assert boardfile.compact(d, "x.toml")["modbus"] == {"host": "10.0.0.7", "port": 1502, "timeout_ms": 300}
    assert json.loads(boardfile.dumps(boardfile.compact(d, "x.toml")))["modbus"]["host"] == "10.0.0.7"
    d["pv"] = {"max_export_w": 5000, "sunspec": 126}  # a unit id
    assert boardfile.compact(d, "x.toml")["pv"]["sunspec"] == 126


@pytest.mark.parametrize(
    ("modbus", "message"),
    [
        ({"host": "inverter.local"}, 'modbus.host must be a numeric IPv4 address like "192.168.1.20", got'),
        ({"host": "192.168.1"}, "modbus.host must be a numeric IPv4 address"),
        ({"host": "192.168.1.256"}, "modbus.host must be a numeric IPv4 address"),
        ({"host": "192.168.01.20"}, "modbus.host must be a numeric IPv4 address"),  # octal to some
        ({"host": "0.0.0.0"}, "modbus.host must be a numeric IPv4 address"),
        ({"host": 3232235796}, "modbus.host must be a numeric IPv4 address"),
        ({"host": "10.0.0.7", "port": 0}, "modbus.port must be an integer 1..65535, got 0"),
        ({"host": "10.0.0.7", "port": "502"}, "modbus.port must be an integer 1..65535"),
        ({"host": "10.0.0.7", "timeout_ms": 50}, "modbus.timeout_ms must be an integer 100..5000, got 50"),
        ({"host": "10.0.0.7", "timeout_ms": 60_000}, "modbus.timeout_ms must be an integer 100..5000"),
        (
            {"host": "10.0.0.7", "uart": 1, "baud": 9600},
            "modbus gives host (Modbus TCP) and uart, baud (RS-485): give one or the other",
        ),
        ({"uart": 1, "tx": 32, "rx": 33}, "modbus.baud is required"),  # RS-485 without host, as before
    ],
)
def test_modbus_tcp_mistakes_are_named(modbus: dict[str, Any], message: str) -> None:
    d = _raw("circuitsetup-atm90e32")
    d["modbus"] = modbus
    with pytest.raises(BoardFileError, match="x\\.toml: " + re.escape(message)):
        boardfile.compact(d, "x.toml")


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(BoardFileError, match="cannot read"):
        boardfile.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("type = [unclosed\n")
    with pytest.raises(BoardFileError, match="not valid TOML"):
        boardfile.load(bad)


BOOT = """
import json
from orders import Limits
from meter import Meter, build
from registers import Registers
from fakes.hardware import FakeHardware
cfg = json.loads(%r)
lim = Limits(cfg)
hw = FakeHardware(cfg, lambda now: 1000)
regs = Registers("regs")
m = Meter(build(cfg["frontend"], hw), regs)
ok = True
for t in range(0, 3601, 60):  # an hour at 1 kW, polled every minute as a board would (faster)
    hw.physics(t)
    ok = m.poll() and ok
act = hw.actuators(cfg)
bat = cfg.get("battery") or {}
for k, v in (("soc", 500), ("power", -20)):  # what the inverter reports, in register units
    if k in bat:
        hw.slave.regs[bat[k]["reg"]] = v
print("BOOT", cfg["type"], ok, regs.e_imp, lim.bat_charge_w, lim.ev_max_ma, lim.relay_mask)
import asyncio
print("BATTERY", asyncio.run(hw.battery_state()))  # awaited: its Modbus reads yield to the loop
"""


@pytest.mark.parametrize("name", sorted(TYPES))
def test_compact_form_boots_on_micropython(name: str, tmp_path: Path) -> None:
    cfg = boardfile.load(TYPES[name])
    # the DSMR fake builds 1 kB telegrams in the board's heap: runs at FIRMWARE_HEAP_NOW
    out = run_micropython(BOOT % boardfile.dumps(cfg), cwd=tmp_path, heap=FIRMWARE_HEAP_NOW).stdout
    words = out.split("BOOT")[1].split()
    assert words[0] == name and words[1] == "True"
    assert int(words[2]) == 1_000_000  # 1 kW for an hour through the chip's byte protocol
    assert int(words[3]) == cfg.get("battery", {}).get("max_charge_w", 0)
    assert int(words[5]) == (1 << len(cfg["relays"])) - 1
    # the board file's battery registers read through the real Modbus master from the fake slave
    want = "(500, -200)" if "battery" in cfg else "None"  # circuitsetup: 0.1 % and 10 W steps
    assert out.split("BATTERY")[1].strip() == want, out
