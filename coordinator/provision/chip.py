"""The ESP32 itself, through ``esptool`` (its ROM bootloader): which chip is on the port, and
installing a MicroPython image.

esptool resets the board into its bootloader with the port's DTR/RTS lines and back into its
firmware afterwards (``default-reset``/``hard-reset``); a port without modem lines (a bridge
wired without them, a pseudo-terminal) needs the board in its bootloader already, so there it
runs with ``no-reset`` both ways.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from coordinator.provision.errors import NOT_ESP32, TOOL, BoardError

VERSION = re.compile(rb"MicroPython v(\d+)\.(\d+)\.(\d+)")
# where a MicroPython image (bootloader, partition table and app in one file) goes, per chip
IMAGE_OFFSET = {"ESP32": 0x1000, "ESP32-S2": 0x1000}


@dataclass(frozen=True)
class Chip:
    family: str  # "ESP32", "ESP32-S3", ... as esptool detects it
    description: str  # e.g. "ESP32-D0WD-V3 (revision v3.1)"
    mac: str
    flash_size: str  # e.g. "4MB"


def esptool(port: str, args: list[str], *, modem: bool, timeout: float) -> str:
    """Run esptool on ``port``; return its output (an error says why it failed)."""
    argv = [sys.executable, "-m", "esptool", "--port", port]
    argv += ["--before", "default-reset" if modem else "no-reset"]
    argv += ["--after", "hard-reset" if modem else "no-reset", *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BoardError(TOOL, f"esptool on {port} did not finish within {timeout:.0f} s") from None
    out = proc.stdout + proc.stderr
    if "No module named esptool" in out:
        raise BoardError(TOOL, "esptool is not installed: pip install -e '.[provision]'")
    if proc.returncode != 0:
        if "Failed to connect" in out or "No serial data received" in out:
            raise BoardError(
                NOT_ESP32,
                f"no ESP32 bootloader answered on {port}: not an ESP32, or it cannot be reset into its "
                "bootloader (hold BOOT while plugging it in)",
            )
        last = [line for line in out.strip().splitlines() if line.strip()][-3:]
        raise BoardError(TOOL, f"esptool on {port} failed ({proc.returncode}): {' / '.join(last)}")
    return out


def _field(out: str, *names: str) -> str:
    for name in names:
        m = re.search(rf"^{re.escape(name)}:?\s+(.+?)\s*$", out, re.M)
        if m:
            return m.group(1)
    return "?"


def identify(port: str, *, modem: bool, timeout: float = 60) -> Chip:
    """The chip on ``port`` (esptool's ``flash-id``); a BoardError unless it is an ESP32."""
    out = esptool(port, ["flash-id"], modem=modem, timeout=timeout)
    m = re.search(r"Detecting chip type\.*\s*(\S+)", out) or re.search(r"Connected to (\S+) on", out)
    family = m.group(1) if m else "?"
    if not family.startswith("ESP32"):
        raise BoardError(NOT_ESP32, f"the chip on {port} is {family}, not an ESP32")
    return Chip(
        family,
        _field(out, "Chip type", "Chip is"),
        _field(out, "MAC"),
        _field(out, "Detected flash size"),
    )


def image_version(image: Path) -> tuple[int, int, int]:
    """The MicroPython version an image holds (its banner, ``MicroPython v1.25.0 on ...``)."""
    try:
        data = image.read_bytes()
    except OSError as e:
        raise BoardError(TOOL, f"MicroPython image {image}: {e.strerror}") from None
    m = VERSION.search(data)
    if m is None:
        raise BoardError(TOOL, f"{image} names no MicroPython version: is it a MicroPython firmware image?")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)))


def install(port: str, chip: Chip, image: Path, *, modem: bool, timeout: float = 600) -> str:
    """Write a MicroPython image (the whole-flash .bin from micropython.org) at its chip's offset.

    Only the image's range is written: the filesystem (the board's key, registers, spool) and
    NVS stay."""
    offset = IMAGE_OFFSET.get(chip.family, 0x0)
    args = ["--chip", chip.family.lower().replace("-", ""), "--baud", "460800"]
    return esptool(port, [*args, "write-flash", hex(offset), str(image)], modem=modem, timeout=timeout)
