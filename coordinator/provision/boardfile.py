"""Board files: human-edited TOML in boards/, checked and converted to the compact JSON a board
reads at boot (``board.json`` in its bundle).

Every problem is reported with the file and the key it concerns, e.g.
``boards/x.toml: battery.max_charge_w must be an integer 0..10000000, got -5``.
"""

from __future__ import annotations

import ipaddress
import json
import tomllib
from pathlib import Path
from typing import Any

from coordinator.errors import CoordinatorError

BOARDS = Path(__file__).resolve().parent.parent.parent / "boards"
CHIPS = {"pzem004t", "atm90e32", "dsmr_p1", "s0"}
MAX_W = 10_000_000
PIN = (0, 39)  # ESP32 GPIO numbers


class BoardFileError(CoordinatorError):
    """A board file is missing, malformed or out of range."""


class _Check:
    def __init__(self, where: str, data: dict[str, Any]) -> None:
        self.where = where
        self.data = data

    def fail(self, key: str, msg: str) -> BoardFileError:
        return BoardFileError(f"{self.where}: {key} {msg}")

    def table(self, key: str, required: bool = False) -> dict[str, Any] | None:
        v = self.data.get(key)
        if v is None:
            if required:
                raise self.fail(key, "is required")
            return None
        if not isinstance(v, dict):
            raise self.fail(key, "must be a table")
        return v

    def int_(
        self, t: dict[str, Any], key: str, path: str, lo: int, hi: int, default: int | None = None
    ) -> int:
        v = t.get(key, default)
        if v is None:
            raise self.fail(f"{path}.{key}", "is required")
        if type(v) is not int or not lo <= v <= hi:
            raise self.fail(f"{path}.{key}", f"must be an integer {lo}..{hi}, got {v!r}")
        return v


def _battery_reads(c: _Check, tb: dict[str, Any], addr: int) -> dict[str, Any]:
    """What the battery inverter reports, read over Modbus (function 0x03, one holding register
    each) with every reading: ``soc`` (state of charge) and ``power``, each an inline table
    ``{ addr, reg, ... }`` whose ``addr`` defaults to the setpoint's slave (the same inverter).

    * ``soc = { reg = 40110, full = 1000 }``: ``full`` (required) is what the unsigned register
      reads at 100 %: 100 for whole percent, 1000 for 0.1 % steps, 255 for a 0..255 scale. The
      board reports per-mille (``value * 1000 // full``, at most 1000).
    * ``power = { reg = 40111, scale_w = 10 }``: a signed 16-bit register in ``scale_w`` W per
      unit, + charging; a negative ``scale_w`` (-100..-1) for an inverter that counts
      discharging as positive. Default 1.

    Without ``soc`` the board reports no state of charge, and the coordinator does not dispatch
    the battery."""
    out: dict[str, Any] = {}
    for key, k, lo, hi, default in (("soc", "full", 1, 0xFFFF, None), ("power", "scale_w", -100, 100, 1)):
        t = tb.get(key)
        if t is None:
            continue
        where = f"battery.{key}"
        if not isinstance(t, dict):
            raise c.fail(where, "must be a table with the reg of the inverter's register")
        r = {
            "addr": c.int_(t, "addr", where, 1, 247, default=addr),
            "reg": c.int_(t, "reg", where, 0, 0xFFFF),
            k: c.int_(t, k, where, lo, hi, default=default),
        }
        if r[k] == 0:
            raise c.fail(f"{where}.{k}", "must not be 0")
        out[key] = r
    return out


_RTU_KEYS = ("uart", "tx", "rx", "baud")


def _modbus(c: _Check, mb: dict[str, Any]) -> dict[str, Any]:
    """``[modbus]``: the RS-485 bus (Modbus RTU: ``uart``, ``tx``, ``rx``, ``baud``) or Modbus
    TCP to an inverter on the LAN (``host``, a numeric IPv4 address: a board cannot bound a DNS
    lookup; ``port``, default 502; ``timeout_ms`` for each transaction, connect included, default
    1000). Not both: a board reaches its inverters one way."""
    if "host" not in mb:
        ranges = ((1, 2), PIN, PIN, (1200, 115200))
        return {k: c.int_(mb, k, "modbus", *rng) for k, rng in zip(_RTU_KEYS, ranges, strict=True)}
    both = [k for k in _RTU_KEYS if k in mb]
    if both:
        rtu = ", ".join(both)
        raise c.fail("modbus", f"gives host (Modbus TCP) and {rtu} (RS-485): give one or the other")
    host = mb["host"]
    try:  # dotted decimal only: no leading zeros (octal to some parsers), no name
        ip = ipaddress.IPv4Address(host) if isinstance(host, str) else None
    except ValueError:
        ip = None
    if ip is None or ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        raise c.fail("modbus.host", f"must be a numeric IPv4 address like \"192.168.1.20\", got {host!r}")
    return {
        "host": host,
        "port": c.int_(mb, "port", "modbus", 1, 65535, default=502),
        "timeout_ms": c.int_(mb, "timeout_ms", "modbus", 100, 5000, default=1000),
    }


def compact(data: dict[str, Any], where: str = "board file") -> dict[str, Any]:
    """Check a parsed board file and return its compact form."""
    c = _Check(where, data)
    out: dict[str, Any] = {}
    t = data.get("type")
    if not isinstance(t, str) or not t or len(t) > 32 or not t.replace("-", "").isalnum():
        raise c.fail("type", "must be an identifier of at most 32 characters")
    out["type"] = t
    fe = c.table("frontend", required=True)
    assert fe is not None
    chip = fe.get("chip")
    if chip not in CHIPS:
        raise c.fail("frontend.chip", f"must be one of {sorted(CHIPS)}, got {chip!r}")
    f: dict[str, Any] = {"chip": chip}
    pins = {
        "pzem004t": ("tx", "rx"),
        "dsmr_p1": ("tx", "rx"),
        "atm90e32": ("sck", "mosi", "miso", "cs"),
        "s0": ("pin",),
    }[chip]
    for p in pins:
        f[p] = c.int_(fe, p, "frontend", *PIN)
    if chip in ("pzem004t", "dsmr_p1"):
        f["uart"] = c.int_(fe, "uart", "frontend", 1, 2)
    if chip == "pzem004t":
        f["addr"] = c.int_(fe, "addr", "frontend", 1, 0xF8, default=1)
    if chip == "dsmr_p1":
        f["baud"] = c.int_(fe, "baud", "frontend", 9600, 115200, default=115200)
        # seconds without a valid telegram before the meter is in fault: 3 x a DSMR 4's 10 s
        f["stale_s"] = c.int_(fe, "stale_s", "frontend", 2, 3600, default=30)
        f["invert_rx"] = bool(fe.get("invert_rx", True))
        f["rxbuf"] = c.int_(fe, "rxbuf", "frontend", 256, 8192, default=2048)
    if chip == "atm90e32":
        f["spi"] = c.int_(fe, "spi", "frontend", 1, 2, default=2)
        f["meter_constant"] = c.int_(fe, "meter_constant", "frontend", 1, 100_000, default=3200)
        f["line_hz"] = c.int_(fe, "line_hz", "frontend", 50, 60, default=50)
        cal = fe.get("calibration") or {}
        for k in ("ugain", "igain"):
            v = cal.get(k, [0, 0, 0])
            if not (
                isinstance(v, list) and len(v) == 3 and all(type(x) is int and 0 <= x <= 0xFFFF for x in v)
            ):
                raise c.fail(f"frontend.calibration.{k}", "must be three integers 0..65535")
        f["calibration"] = {"ugain": cal.get("ugain", [0, 0, 0]), "igain": cal.get("igain", [0, 0, 0])}
    if chip == "s0":
        f["pulses_per_kwh"] = c.int_(fe, "pulses_per_kwh", "frontend", 1, 100_000, default=1000)
        f["debounce_ms"] = c.int_(fe, "debounce_ms", "frontend", 0, 1000, default=50)
    out["frontend"] = f

    relays = data.get("relays", [])
    if not isinstance(relays, list) or len(relays) > 8:
        raise c.fail("relays", "must be a list of at most 8 relays")
    out["relays"] = [{"pin": c.int_(r, "pin", f"relays[{i}]", *PIN)} for i, r in enumerate(relays)]

    mb = c.table("modbus")
    if mb is not None:
        out["modbus"] = _modbus(c, mb)
    for name, limit in (("battery", ("max_charge_w", "max_discharge_w")), ("pv", ("max_export_w",))):
        tb = c.table(name)
        if tb is None:
            continue
        d: dict[str, Any] = {k: c.int_(tb, k, name, 0, MAX_W) for k in limit}
        m = tb.get("modbus")
        # a SunSpec device (its slave address; over Modbus TCP its unit id): the board finds its
        # models; ``modbus`` (hand-listed registers) is then the fallback for a model it lacks
        if "sunspec" in tb:
            d["sunspec"] = c.int_(tb, "sunspec", name, 1, 247)
            if name == "pv" and "rated_w" in tb:  # WMax when the device has no model 121
                d["rated_w"] = c.int_(tb, "rated_w", name, 1, MAX_W)
        elif not isinstance(m, dict):
            raise c.fail(f"{name}.modbus", "must give addr and reg of the setpoint register (or sunspec)")
        if "modbus" not in out:
            raise c.fail("modbus", f"is required for {name} setpoints")
        if isinstance(m, dict):
            d["modbus"] = {
                "addr": c.int_(m, "addr", f"{name}.modbus", 1, 247),
                "reg": c.int_(m, "reg", f"{name}.modbus", 0, 0xFFFF),
                "scale_w": c.int_(m, "scale_w", f"{name}.modbus", 1, 1000, default=1),
            }
        elif m is not None:
            raise c.fail(f"{name}.modbus", "must be a table with addr and reg")
        if name == "battery":
            d.update(_battery_reads(c, tb, d["modbus"]["addr"] if "modbus" in d else d["sunspec"]))
        out[name] = d
    ev = c.table("ev")
    if ev is not None:
        lo = c.int_(ev, "min_ma", "ev", 6000, 80_000, default=6000)
        hi = c.int_(ev, "max_ma", "ev", lo, 80_000)
        out["ev"] = {"pwm_pin": c.int_(ev, "pwm_pin", "ev", *PIN), "min_ma": lo, "max_ma": hi}

    lim = c.table("limits", required=True)
    assert lim is not None
    out["limits"] = {k: c.int_(lim, k, "limits", 0, MAX_W) for k in ("import_w", "export_w")}
    safe = c.table("safe") or {}
    s: dict[str, Any] = {"relays": c.int_(safe, "relays", "safe", 0, 0xFF, default=0)}
    if "battery" in out:
        b = out["battery"]
        s["bat_w"] = c.int_(safe, "bat_w", "safe", -b["max_discharge_w"], b["max_charge_w"], default=0)
    if "ev" in out:
        s["ev_ma"] = c.int_(safe, "ev_ma", "safe", 0, out["ev"]["max_ma"], default=0)
    if "pv" in out:
        mx = out["pv"]["max_export_w"]
        s["pv_limit_w"] = c.int_(safe, "pv_limit_w", "safe", 0, mx, default=mx)
    out["safe"] = s

    tm = c.table("timing") or {}
    for k, lo, hi, default in (
        ("reading_s", 1, 3600, 10),
        ("interval_s", 60, 86_400, 900),
        ("status_s", 10, 86_400, 300),
        ("save_s", 10, 86_400, 300),
        ("save_mwh", 1, 10_000_000, 50_000),
        ("spool", 10, 100_000, 2000),
    ):
        out[k] = c.int_(tm, k, "timing", lo, hi, default=default)
    if out["interval_s"] % out["reading_s"]:
        raise c.fail("timing.interval_s", "must be a multiple of timing.reading_s")
    sha = (c.table("crypto") or {}).get("sha512", "viper")  # the board's SHA-512 without hashlib's
    if sha not in ("viper", "pure"):
        raise c.fail("crypto.sha512", f"must be 'viper' (native code) or 'pure' (plain Python), got {sha!r}")
    if sha == "pure":
        out["sha512"] = "pure"
    return out


def load(path: str | Path) -> dict[str, Any]:
    """Read, check and convert one board file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except OSError as e:
        raise BoardFileError(f"{p}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise BoardFileError(f"{p}: not UTF-8 text: {e.reason} at byte {e.start}") from None
    except tomllib.TOMLDecodeError as e:
        raise BoardFileError(f"{p}: not valid TOML: {e}") from None
    return compact(data, str(p))


def dumps(cfg: dict[str, Any]) -> str:
    """The compact JSON the board reads (sorted keys, no spaces: reproducible bytes)."""
    return json.dumps(cfg, sort_keys=True, separators=(",", ":"))


def board_types() -> dict[str, Path]:
    return {p.stem: p for p in sorted(BOARDS.glob("*.toml"))}
