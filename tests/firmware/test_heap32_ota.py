"""The heap of an over-the-air update on the 32-bit WebAssembly port (tests/mpy32.py): the board
boots as in test_heap32.py, takes a manifest signed by the release key (verified), writes the
image chunk by chunk into the inactive slot (the partition a file) and reads it back, hashed.

Asserted is the live data after each step (exact on this port); within a step this port does not
collect (tests/mpy32.py), so what a step allocates in all is printed, not its peak."""

from __future__ import annotations

import hashlib
import json
import os
import re

import pytest

from protocol import crypto, frame, messages, topics
from tests import mpy32
from tests.firmware.test_heap32 import board_files

pytestmark = pytest.mark.skipif(mpy32.missing() is not None, reason=str(mpy32.missing()))

REL = crypto.SigningKey(bytes(range(7, 39)))
SLOT = 16 * 1024

OFFER = """
a0 = gc.mem_alloc()
with open("update.bin", "rb") as f:
    fr = f.read()
why = b.up.offer(b.up.topic, fr)
print("OFFER", repr(why), "ALLOC", gc.mem_alloc() - a0)
fr = None
gc.collect()
"""
# one chunk per step: with no collection inside a step, live data before it plus all it allocates
# bounds its peak from above
CHUNK = """
a0 = gc.mem_alloc()
nxt = b.up.next_chunk()
with open("img.bin", "rb") as f:
    f.seek(nxt[0] * 1024)
    why = b.up.write(nxt[0], f.read(1024))
print("STEP", a0, gc.mem_alloc() - a0, repr(why))
nxt = None
gc.collect()
"""
CHECK = """
a0 = gc.mem_alloc()
buf = bytearray(1024)
b.up.off = 0
why = None
while why is None:
    why = b.up.check_step(buf)
print("STEP", a0, gc.mem_alloc() - a0, repr(why))
print("CHECK", repr(why))
buf = None
gc.collect()
"""


def test_update_download_live_heap_under_64k() -> None:
    files = board_files()
    s = json.loads(files["settings.json"])
    s["release_key"] = REL.public.hex()
    files["settings.json"] = json.dumps(s).encode()
    img = b"\xd2\xcd\x31" + os.urandom(12 * 1024 - 3)  # a ROMFS header, then any bytes
    files["img.bin"] = img
    files["romfs.part"] = b"\xff" * (2 * SLOT)
    t = topics.board_topic("bench", "m01", "update")
    cfg = json.loads(files["board.json"])
    up = messages.Update(
        board="m01", version="9.0.0", board_type=cfg.get("type", "esp32"), min_fw="", size=len(img),
        chunk=1024, digest=hashlib.sha256(img).digest(), downgrade=0, ts=1_750_000_000,
    )
    files["update.bin"] = frame.seal(up, t, REL)
    steps = [mpy32.BOARD_BOOT, mpy32.BOARD_HEAP, OFFER, mpy32.BOARD_HEAP]
    steps += [CHUNK] * (len(img) // 1024) + [CHECK, mpy32.BOARD_HEAP]
    out = mpy32.run(steps, files=files, timeout=300).stdout
    assert "OFFER '' " in out and "CHECK ''" in out, out
    boot, offered, written = [int(m) for m in re.findall(r"^HEAP (\d+) \d+$", out, re.M)]
    steps_ = [(int(a), int(n), w) for a, n, w in re.findall(r"^STEP (\d+) (\d+) (\S+)$", out, re.M)]
    assert all(w == "''" for _, _, w in steps_), out
    peak = max(a + n for a, n, _ in steps_)  # an upper bound of each chunk's and the check's peak
    print(f"32-bit heap in use (B): boot {boot}, manifest verified {offered}, image written and "
          f"checked {written}; download peak at most {peak}")
    assert written < 56 * 1024 and written - boot < 2048  # the download under way: ~1 KiB more
    assert peak < 64 * 1024
