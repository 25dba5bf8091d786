"""Finding a board's serial port: the USB bridges ESP32 boards use, and whether a port is free.

A port is a candidate when pyserial's ``list_ports`` reports one of the USB VID/PIDs of the
usual ESP32 USB-serial bridges (or the ESP32-S2/S3's own USB). ``check`` opens it with an
exclusive lock, as mpremote and esptool do, to tell a missing port, a busy one (another program
holds it: a serial monitor, ModemManager, a second peergrid) and one the user may not open.
"""

from __future__ import annotations

import errno
import fcntl
import os
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from coordinator.provision.errors import NO_PORT, PORT_BUSY, BoardError

# (vid, pid or None for any) -> bridge
BRIDGES: dict[tuple[int, int | None], str] = {
    (0x10C4, 0xEA60): "CP210x",
    (0x1A86, 0x7523): "CH340",
    (0x1A86, 0x55D4): "CH9102",
    (0x0403, 0x6001): "FTDI FT232R",
    (0x303A, None): "ESP32-S2/S3 native USB",
}


@dataclass(frozen=True)
class Port:
    device: str
    bridge: str
    serial: str | None = None
    location: str | None = None

    @property
    def identity(self) -> tuple[str, str | None, str | None]:
        return (self.device, self.serial, self.location)


class PortInfo:
    """What ``serial.tools.list_ports`` reports about a port (the attributes used here)."""

    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None
    location: str | None


Lister = Callable[[], Sequence[PortInfo]]


def system_ports() -> Sequence[PortInfo]:
    try:
        from serial.tools import list_ports  # type: ignore[import-untyped]
    except ImportError:
        raise BoardError(NO_PORT, "pyserial is not installed: pip install -e '.[provision]'") from None
    found: Sequence[PortInfo] = list_ports.comports()
    return found


def bridge_of(info: PortInfo) -> str | None:
    if info.vid is None:
        return None
    return BRIDGES.get((info.vid, info.pid)) or BRIDGES.get((info.vid, None))


def candidates(lister: Lister = system_ports) -> list[Port]:
    """The ports of ESP32-style USB bridges present now, sorted by device name."""
    out = []
    for info in lister():
        b = bridge_of(info)
        if b is not None:
            out.append(Port(info.device, b, info.serial_number, info.location))
    return sorted(out, key=lambda p: p.device)


def check(device: str) -> bool:
    """Raise a BoardError if ``device`` is missing, busy or not ours to open; return whether it
    has modem lines (DTR/RTS: esptool resets the board into its bootloader with them)."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise BoardError(NO_PORT, f"no serial port {device}: is the board plugged in?") from None
    except PermissionError:
        raise BoardError(
            PORT_BUSY, f"{device}: permission denied (add yourself to the 'dialout' group and log in again)"
        ) from None
    except OSError as e:
        if e.errno == errno.EBUSY:
            raise BoardError(PORT_BUSY, f"{device} is busy: another program holds it open") from None
        raise BoardError(NO_PORT, f"{device}: {e.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise BoardError(
                PORT_BUSY,
                f"{device} is busy: another program holds it (a serial monitor, mpremote, esptool, "
                "ModemManager?); close it and try again",
            ) from None
        try:
            fcntl.ioctl(fd, termios.TIOCMGET, b"\0\0\0\0")
            return True
        except OSError:
            return False  # a pseudo-terminal or a bridge without modem lines: no automatic reset
    finally:
        os.close(fd)


def find(lister: Lister = system_ports) -> Port:
    """The one ESP32 board plugged in now; an error if there is none or several."""
    found = candidates(lister)
    if not found:
        names = ", ".join(sorted(set(BRIDGES.values())))
        raise BoardError(NO_PORT, f"no ESP32 board found on USB (looked for {names}); give --port")
    if len(found) > 1:
        raise BoardError(
            NO_PORT, f"{len(found)} boards plugged in ({', '.join(p.device for p in found)}): give --port"
        )
    return found[0]


@dataclass
class Watcher:
    """Boards plugged in one after another: ``next_port`` returns a port that appeared since the
    last one handed out (a board left plugged in is not provisioned twice; its port may come back
    under the same name once it is unplugged)."""

    lister: Lister = system_ports
    poll_s: float = 0.5
    done: set[tuple[str, str | None, str | None]] = field(default_factory=set)
    given: list[str] = field(default_factory=list)  # --port: one per board in order, or one for all
    handed: int = 0

    def _given(self, timeout_s: float, on_wait: Callable[[], None] | None) -> Port:
        if self.handed >= len(self.given) and len(self.given) > 1:
            raise BoardError(NO_PORT, f"more boards than the {len(self.given)} ports given")
        dev = self.given[min(self.handed, len(self.given) - 1)]
        deadline = time.monotonic() + timeout_s
        gone = self.handed == 0 or len(self.given) > 1  # one port for all: the last board goes first
        waited = False
        while True:
            present = os.path.exists(dev)
            gone = gone or not present
            if gone and present:
                self.handed += 1
                return Port(dev, "given")
            if time.monotonic() >= deadline:
                raise BoardError(NO_PORT, f"no board on {dev} within {timeout_s:.0f} s")
            if not waited and on_wait is not None:
                on_wait()
                waited = True
            time.sleep(self.poll_s)

    def next_port(self, timeout_s: float, on_wait: Callable[[], None] | None = None) -> Port:
        if self.given:
            return self._given(timeout_s, on_wait)
        done = self.done
        deadline = time.monotonic() + timeout_s
        waited = False
        while True:
            now = candidates(self.lister)
            done &= {p.identity for p in now}  # unplugged: its name may come back for the next board
            new = [p for p in now if p.identity not in done]
            if new:
                done.add(new[0].identity)
                return new[0]
            if time.monotonic() >= deadline:
                raise BoardError(NO_PORT, f"no new ESP32 board was plugged in within {timeout_s:.0f} s")
            if not waited and on_wait is not None:
                on_wait()
                waited = True
            time.sleep(self.poll_s)
