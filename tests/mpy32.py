"""Run code on a 32-bit MicroPython: the official WebAssembly port (npm
``@micropython/micropython-webassembly-pyscript``) under Node.

The unix port of tests/mpy.py is 64-bit: 8-byte words and 32-byte GC blocks, so every object
costs about twice what it costs on an ESP32. The WebAssembly port is a 32-bit MicroPython
(4-byte words, 16-byte blocks, the object layout of the ESP32 port), so its ``gc`` figures
are the board's. This module installs nothing; ``.ci/run`` installs the package with

    npm install --prefix build/wasm32 @micropython/micropython-webassembly-pyscript@1.29.0-6

How this port differs from a board, and what the runner does about it:

* Its collector cannot scan the WebAssembly stack, so it never collects while Python runs:
  ``gc.collect()``, ``gc.threshold`` and a full heap only set a "pending" flag, and the
  collection runs when control returns to JavaScript (the end of a ``runPython`` call).
  Instead of running out, the heap grows (``MICROPY_GC_SPLIT_HEAP_AUTO``: up to 128 MiB
  beyond the ``heapsize`` it starts with); a collection releases the areas it empties.
  A script is therefore a list of *steps*, one ``runPython`` call each; after a step that
  called ``gc.collect()``, ``gc.mem_alloc()`` is exactly the live heap, with a board's
  object sizes. What this port cannot tell is the peak within a step: signing a reading
  allocates ~0.9 MB of short-lived big integers with no collection in between, so a board's
  smallest heap (its peak live data) cannot be found by shrinking ``heapsize`` here.
  (Collecting inside a step from a scheduled callback was tried and is unsafe: C code such as
  ``mp_obj_instance_make_new`` keeps heap blocks only in C locals while it calls ``__init__``
  and frees them explicitly afterwards, so a collection there corrupts the heap.)
* No sockets, no ``machine``, no ``os.urandom``, no native/viper code (bytecode-only .mpy).

The board's modules come from a ROMFS image (``vfs.VfsRom``) that the port mounts from its own
``malloc`` memory, outside the GC heap, as code in flash on a board (``code="romfs"``), or as
``.mpy`` files read into the heap (``code="heap"``).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

from tests.romfs import _files, compile_mpy, write_image

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "@micropython/micropython-webassembly-pyscript"
VERSION = "1.29.0-6"  # matches the unix port's 1.29 and mpy-cross's .mpy v6.3
NPM_PREFIX = ROOT / "build" / "wasm32"
PKG = NPM_PREFIX / "node_modules" / PACKAGE
NPM_INSTALL = f"npm install --prefix build/wasm32 {PACKAGE}@{VERSION}"
HEAP = 64 * 1024
OOM = "MPY32-MEMORYERROR"  # printed by a step that ran out of heap
# viper needs a native emitter, which the WebAssembly port has not; protocol.sha512 falls back
# to protocol._sha512_pure when this module cannot be imported
NATIVE_ONLY = {"protocol/_sha512_viper.py"}

DRIVER = r"""
import { readFileSync } from "node:fs";
const job = JSON.parse(readFileSync(0, "utf8"));
let oom = false;
const { loadMicroPython } = await import(job.module);
const opts = {
  heapsize: job.heap,
  pystack: job.pystack,
  url: job.wasm,
  stdout: (line) => {
    if (line === job.oom) oom = true;
    else process.stdout.write(line + "\n");
  },
  stderr: (line) => process.stderr.write(line + "\n"),
};
if (job.romfs) opts.romfs = readFileSync(job.romfs);
const mp = await loadMicroPython(opts);
const put = (path, data) => {
  const parts = path.split("/").filter((p) => p);
  let dir = "";
  for (const p of parts.slice(0, -1)) {
    dir += "/" + p;
    try { mp.FS.mkdir(dir); } catch (e) { /* exists */ }
  }
  mp.FS.writeFile(path, Buffer.from(data, "base64"));
};
for (const [path, data] of Object.entries(job.files)) put(path, data);
mp.FS.chdir(job.cwd);
for (let i = 0; i < job.steps.length; i++) {
  try {
    mp.runPython(job.steps[i]);
  } catch (e) {
    process.stderr.write(`step ${i} failed: ${e.type ?? e.name}: ${e.message}\n`);
    process.exit(1);
  }
  if (oom) {
    process.stderr.write(`step ${i} failed: MemoryError (heap ${job.heap} bytes)\n`);
    process.exit(1);
  }
}
"""

CHDIR = "import os\nos.chdir('/board')\ndel os\n"


def missing() -> str | None:
    """Why the 32-bit MicroPython cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (PKG / "micropython.mjs").exists():
        return f"{PACKAGE} is not installed: {NPM_INSTALL}"
    return None


def compiled() -> dict[str, bytes]:
    """firmware/, protocol/ and tests/onboard/ compiled to bytecode-only .mpy, by path."""
    return compile_mpy([(rel, p) for rel, p in _files() if rel not in NATIVE_ONLY], None, "mpy32")


def build_image() -> Path:
    """The ROMFS image of ``compiled()`` (cached by content)."""
    return write_image(compiled(), "romfs32")


def _guard(step: str) -> str:
    # A MemoryError must be caught in Python: reporting it to JavaScript formats the traceback,
    # which needs the heap that just ran out (the port then spins in nlr_jump_fail). The
    # marker line is printed without allocating; the driver stops at it.
    body = "".join(" " + line if line.strip() else line for line in step.splitlines(keepends=True))
    return f"try:\n{body}\n pass\nexcept MemoryError:\n print({OOM!r})\n"


def run(
    steps: list[str],
    *,
    heap: int = HEAP,
    files: dict[str, bytes] | None = None,
    code: str = "romfs",
    timeout: float = 120,
    check: bool = True,
    pystack: int = 2048,
) -> subprocess.CompletedProcess[str]:
    """Run ``steps`` (MicroPython source, one ``runPython`` call each) in a heap that starts at
    ``heap`` bytes (and grows within a step, see the module docstring), in the directory /board
    holding ``files``; raise on failure if ``check``.

    ``code``: "romfs" (the board's modules in a ROMFS image outside the heap), "heap" (.mpy
    files under /lib, loaded into the heap) or "none" (only what ``files`` holds).
    ``pystack``: words of Python stack (outside the heap, as frames on a board's C stack).
    """
    why = missing()
    if why:
        raise RuntimeError(why)
    put = {f"/board/{name}": data for name, data in (files or {}).items()}
    job: dict[str, object] = {
        "module": (PKG / "micropython.mjs").as_uri(),
        "wasm": str(PKG / "micropython.wasm"),
        "heap": heap,
        "pystack": pystack,
        "cwd": "/board",
        "romfs": None,
        "oom": OOM,
    }
    if code == "romfs":
        job["romfs"] = str(build_image())  # the port mounts it at /rom, on sys.path
    elif code == "heap":
        put.update({f"/lib/{rel}": data for rel, data in compiled().items()})
    elif code != "none":
        raise ValueError(f"code={code!r}")
    put.setdefault("/board/.keep", b"")
    job["files"] = {path: base64.b64encode(data).decode() for path, data in put.items()}
    # the port makes /rom the current directory when it mounts the image
    job["steps"] = [_guard(step) for step in [CHDIR, *steps]]
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", DRIVER],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(ROOT),
    )
    if check and proc.returncode != 0:
        out = f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        raise AssertionError(f"wasm32 micropython exited {proc.returncode}\n{out}")
    return proc


# -- the board runtime on the 32-bit port ---------------------------------------------------------
# As bench/firmware.py's BOOT_ONLY / SCRIPT: firmware/app.py's Board with the fake hardware and
# a simulated clock, driven without MQTT (the port has no sockets): readings are sealed by
# Board.reading, an order frame goes through the board's OrderHandler as the link task hands
# it over. Each step ends with gc.collect(), as the firmware's reading task does.

BOARD_BOOT = """
import gc
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
hw = FakeHardware(cfg, lambda now: 900)
b = app.Board(cfg, settings, hw, SimClock(1750000000, 1))
print("KEY", b.key.public.hex())
gc.collect()
"""
BOARD_HEAP = "print('HEAP', gc.mem_alloc(), gc.mem_free())\n"
BOARD_READING = """
now = 1750000000 + 10 * %d
hw.physics(now)
b.meter.poll()
fr = b.reading(now)
print("READING", fr.hex())
fr = None
gc.collect()
"""
BOARD_ORDER = """
with open("order.bin", "rb") as f:
    fr = f.read()
co = b.orders.handle(b.t_order, fr, %d)  # awaited by the link task; nothing in it waits here
try:  # (no Modbus device on this board), so one step runs it to its end
    co.send(None)
except StopIteration as e:
    ack = e.value
print("ACK", ack[0], ack[1].hex())
fr = ack = co = None
gc.collect()
"""


def board_run(
    files: dict[str, bytes], *, readings: int, order: int | None, heap: int = HEAP, code: str = "romfs"
) -> subprocess.CompletedProcess[str]:
    """Boot the board (``files``: key.bin, board.json, settings.json and, with ``order`` (the
    time it arrives), order.bin), take ``readings``, then handle the order. Prints KEY, then
    HEAP (gc.mem_alloc, gc.mem_free) after boot, READING frames, HEAP, ACK, HEAP."""
    steps = [BOARD_BOOT, BOARD_HEAP]
    steps += [BOARD_READING % i for i in range(1, readings + 1)]
    steps.append(BOARD_HEAP)
    if order is not None:
        steps += [BOARD_ORDER % order, BOARD_HEAP]
    return run(steps, heap=heap, files=files, code=code, timeout=300)
