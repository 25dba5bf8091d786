"""A board with a ROMFS partition on the MicroPython unix port, for the over-the-air update tests.

The partition is a file in the board's directory (``romfs.part``: two slots); each boot maps it
into memory owned by this launcher (as an ESP32 maps its partition) and hands it to main.py's
loader as ``sys.modules["romfs_partition"]``; main.py (source in the board's directory, as on a
board) picks the slot and mounts it at /rom. Firmware writes go to the file (fakes/hardware.py
FileRom), and so reach the next boot.

Usage as a launcher: ``python -m tests.otaboard PARTITION HEAPSIZE -c CODE``.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.mpy import mpy_env
from tests.romfs import ARCH, _files, compile_mpy, write_image

ROOT = Path(__file__).resolve().parent.parent
SLOT = 256 * 1024
PREFIX = """import sys, uctypes
sys.modules["romfs_partition"] = uctypes.bytearray_at({addr}, {size})
sys.path.insert(0, "/rom")
del uctypes
"""


def image(version: str, *, crash: bool = False) -> bytes:
    """The board's code (firmware with its fakes, protocol) as a ROMFS image whose FW_VERSION is
    ``version``; with ``crash`` its app module raises when imported (a broken build)."""
    files = [(rel, p) for rel, p in _files() if not rel.startswith("onboard/")]
    tmp = Path(tempfile.gettempdir()) / f"peergrid-ota-src-{version}-{int(crash)}"
    tmp.mkdir(exist_ok=True)
    app = (ROOT / "firmware" / "app.py").read_text()
    app = re.sub(r'^FW_VERSION = "[^"]+"', f'FW_VERSION = "{version}"', app, flags=re.M)
    if crash:
        app += '\nraise RuntimeError("broken build")\n'
    (tmp / "app.py").write_text(app)
    files = [(rel, tmp / "app.py" if rel == "app.py" else p) for rel, p in files]
    return write_image(compile_mpy(files, ARCH, f"ota-{version}-{int(crash)}"), f"ota-{version}").read_bytes()


def install(d: Path, img: bytes) -> None:
    """A freshly flashed board: main.py on its filesystem, ``img`` in slot 0, slot 1 erased."""
    if len(img) > SLOT:
        raise ValueError(f"image of {len(img)} bytes exceeds the slot")
    shutil.copy(ROOT / "firmware" / "main.py", d / "main.py")
    (d / "romfs.part").write_bytes(img + b"\xff" * (2 * SLOT - len(img)))


BOOT = """
import main
def hw(cfg):
    from fakes.hardware import FakeHardware
    return FakeHardware(cfg, lambda now: 900)
def clock():
    from fakes.clock import SimClock
    return SimClock(%d, %d)
b = main.start(hw, clock, %d)
print("BOOTED", None if b is None else b.reboot, None if b is None else b.sent)
"""


def boot(d: Path, start: int, until: int, *, speed: int = 60, heap: str = "128k",
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """One boot of the board in ``d`` (main.start: loader, boot count, runtime)."""
    code = BOOT % (start, speed, until)
    return subprocess.run(
        [sys.executable, "-m", "tests.otaboard", str(d / "romfs.part"), heap, "-c", code],
        env=mpy_env(romfs=True), cwd=str(d), capture_output=True, text=True, timeout=timeout,
    )


def main(argv: list[str]) -> int:
    part, heap, flag, code = argv[1], argv[2], argv[3], argv[4]
    if flag != "-c":
        raise SystemExit("usage: python -m tests.otaboard PARTITION HEAPSIZE -c CODE")
    data = Path(part).read_bytes()
    buf = ctypes.create_string_buffer(data, len(data))  # lives outside MicroPython's heap
    import micropython_run

    prefix = PREFIX.format(addr=ctypes.addressof(buf), size=len(data))
    rc: int = micropython_run.run_main(["micropython", "-X", f"heapsize={heap}", "-c", prefix + code])
    return rc or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
