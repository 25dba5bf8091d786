"""Run code on a 32-bit (x86) build of the MicroPython unix port, when one is provided.

The WebAssembly port of tests/mpy32.py has a board's object sizes but never collects inside a
step, so it cannot show a step's peak. A 32-bit unix port collects whenever an allocation fails,
as a board does: the smallest ``-X heapsize`` in which a step still succeeds is its real peak
(live data, short-lived garbage that cannot be collected yet, fragmentation), with 4-byte words
and 16-byte GC blocks as on an ESP32. It also runs viper/native code for x86, a 32-bit native
emitter. Nothing here builds it (docs/firmware.md says how); it is found through the
environment variable PEERGRID_MPY32_UNIX (the binary's path), or ``micropython32`` on PATH.

The board's modules (and the measuring scripts) come from a ROMFS image compiled with
``mpy-cross -march=x86``, copied into ``malloc`` memory through ``ffi`` and mounted with
``vfs.VfsRom``: code runs in place outside the GC heap, as from flash on a board.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.romfs import ROOT, _files, compile_mpy, write_image

ENV = "PEERGRID_MPY32_UNIX"
NAME = "micropython32"
HOW = f"set {ENV} to a 32-bit MicroPython unix port (docs/firmware.md) or put {NAME} on PATH"

MOUNT = """import ffi, uctypes, vfs, sys, gc
_a = ffi.open("libc.so.6").func("p", "malloc", "I")({size})
with open({image!r}, "rb") as _f:
    _f.readinto(uctypes.bytearray_at(_a, {size}))
vfs.mount(vfs.VfsRom(uctypes.bytearray_at(_a, {size})), "/rom")
sys.path.insert(0, "/rom")
del _a, _f, ffi, uctypes, vfs, sys
gc.collect()
"""

PROBE = """
import sys, micropython, ffi, uctypes, vfs, asyncio, socket, select
@micropython.viper
def v(x: int) -> int:
    return x * 3
print("PROBE", sys.maxsize, sys.implementation._mpy >> 10, v(5))
"""


def exe() -> str | None:
    """The 32-bit binary named by PEERGRID_MPY32_UNIX, or micropython32 on PATH."""
    path = os.environ.get(ENV)
    if path:
        return path
    return shutil.which(NAME)


@functools.cache
def _probe(path: str) -> str | None:
    if not os.access(path, os.X_OK):
        return f"{ENV}={path} is not an executable"
    try:
        p = subprocess.run([path, "-c", PROBE], capture_output=True, text=True, timeout=60)
    except OSError as e:
        return f"{path} does not run: {e}"
    fields = p.stdout.split()
    if p.returncode != 0 or len(fields) != 4 or fields[0] != "PROBE":
        tail = (p.stdout + p.stderr).strip()[-200:]
        return f"{path} lacks what the firmware needs (ffi, vfs, asyncio, socket, viper): {tail}"
    if fields[1] != str(2**31 - 1) or fields[2] != "1" or fields[3] != "15":
        return f"{path} is not a 32-bit x86 build with viper (maxsize {fields[1]}, mpy arch {fields[2]})"
    return None


def missing() -> str | None:
    """Why no 32-bit unix port can run here, or None when it can."""
    path = exe()
    if path is None:
        return f"no 32-bit MicroPython unix port: {HOW}"
    return _probe(path)


def build_image(scripts: dict[str, str] | None = None) -> Path:
    """A ROMFS image of firmware/, protocol/, tests/onboard/ compiled for x86, plus ``scripts``
    (module name -> source) so that a measuring script's own code is not in the heap either."""
    files = _files()
    mods = compile_mpy(files, "x86", "mpy-x86")
    if scripts:
        src = Path(tempfile.gettempdir()) / "peergrid-mpy32unix-src"
        src.mkdir(exist_ok=True)
        extra = []
        for name, text in sorted(scripts.items()):
            p = src / f"{name}.py"
            if not p.exists() or p.read_text() != text:
                p.write_text(text)
            extra.append((f"{name}.py", p))
        mods = {**mods, **compile_mpy(extra, "x86", "mpy-x86-scripts")}
    return write_image(mods, "romfs-x86")


def run(
    code: str,
    *,
    heap: int,
    files: dict[str, bytes] | None = None,
    image: Path | None = None,
    stdin: str | None = None,
    timeout: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with ``-X heapsize=<heap>`` (bytes) in a fresh directory holding ``files``,
    the modules mounted from ``image`` (default: ``build_image()``) at /rom."""
    path = exe()
    why = missing()
    if path is None or why:
        raise RuntimeError(why)
    img = image or build_image()
    prefix = MOUNT.format(size=img.stat().st_size, image=str(img))
    env = dict(os.environ)
    env["MICROPYPATH"] = ".frozen"  # asyncio; everything else from /rom
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in (files or {}).items():
            (Path(tmp) / name).write_bytes(data)
        proc = subprocess.run(
            [path, "-X", f"heapsize={heap}", "-c", prefix + code],
            env=env,
            cwd=tmp,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if check and proc.returncode != 0:
        out = f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        raise AssertionError(f"32-bit micropython exited {proc.returncode}\n{out}")
    return proc


def smallest_heap(
    code: str,
    done: str,
    *,
    files: dict[str, bytes] | None = None,
    image: Path | None = None,
    lo: int = 8 * 1024,
    hi: int = 256 * 1024,
    grain: int = 256,
) -> tuple[int, str]:
    """The smallest ``-X heapsize`` (bytes, to ``grain``) in which ``code`` prints the line
    ``done``, by bisection between ``lo`` (assumed too small) and ``hi`` (must succeed); and the
    output of the run at that size."""
    ok = run(code, heap=hi, files=files, image=image, check=False)
    if done not in ok.stdout.splitlines():
        raise AssertionError(f"fails even with a {hi}-byte heap\n{ok.stdout}\n{ok.stderr}")
    while hi - lo > grain:
        mid = (lo + hi) // 2 // grain * grain
        p = run(code, heap=mid, files=files, image=image, check=False)
        if done in p.stdout.splitlines():
            hi, ok = mid, p
        else:
            lo = mid
    return hi, ok.stdout


__all__ = ["ROOT", "build_image", "exe", "missing", "run", "smallest_heap"]
