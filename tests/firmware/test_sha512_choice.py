"""The board file selects the plain-Python SHA-512 (``sha512 = "pure"`` in its compact form):
the board signs with it, and the signatures verify."""

from __future__ import annotations

import json
from pathlib import Path

from protocol import crypto, frame, messages, topics
from tests.firmware.test_link import board_files
from tests.mpy import FIRMWARE_HEAP_NOW, run_micropython

RUN = r"""
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
from protocol import _sha512_pure, sha512
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
b = app.Board(cfg, settings, FakeHardware(cfg, lambda now: 500), SimClock(1750000000, 1))
print("RESULT", sha512._fallback[0] is _sha512_pure.sha512, b.key.public.hex(), b.reading(1750000010).hex())
"""


def test_board_file_selects_the_plain_python_sha512(tmp_path: Path) -> None:
    board_files(tmp_path, 1)
    cfg = json.loads((tmp_path / "board.json").read_text())
    (tmp_path / "board.json").write_text(json.dumps({**cfg, "sha512": "pure"}))
    out = run_micropython(RUN, heap=FIRMWARE_HEAP_NOW, cwd=tmp_path).stdout
    chosen, key, fr = out.split("RESULT")[1].split()
    assert chosen == "True", out
    ver = crypto.Verifier(bytes.fromhex(key))
    r = frame.open_frame(topics.board_topic("g1", "m01", "reading"), bytes.fromhex(fr), lambda m: ver)
    assert isinstance(r, messages.Reading) and r.ts == 1_750_000_010
