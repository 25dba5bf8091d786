"""The board's wall clock on the real MicroPython unix port (the NTP task itself: test_stalls.py)."""

from __future__ import annotations

from pathlib import Path

from tests.mpy import run_micropython

STATUS_AFTER_STEP_BACK = r"""
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
from protocol import crypto, frame, messages, topics
cfg = {"type": "t", "frontend": {"chip": "pzem004t", "uart": 2, "tx": 17, "rx": 16}}
settings = {"board": "m01", "grid": "g1", "coordinator_key": "00" * 32, "broker": {"host": "x"}}
b = app.Board(cfg, settings, FakeHardware(cfg, lambda now: 0), SimClock(1_750_000_000, 1))
t = topics.board_topic("g1", "m01", "status")
s = frame.open_frame(t, b.status(messages.S_ONLINE, b.started - 3600),
                   lambda m: crypto.Verifier(b.key.public))
print("RESULT", s.uptime)
"""


def test_status_after_the_clock_stepped_back_before_boot(tmp_path: Path) -> None:
    # before: uptime was ``now - started``: with the clock stepped back before the boot time (an
    # RTC ahead of NTP at boot) it went negative, the u32 field refused it (FieldError) and the
    # status, the link session that sends it and the last will of every reconnect failed with it
    out = run_micropython(STATUS_AFTER_STEP_BACK, heap="128k", cwd=tmp_path).stdout
    assert out.split("RESULT")[1].split() == ["0"], out
