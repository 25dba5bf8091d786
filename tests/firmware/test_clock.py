"""The board's wall clock on the real MicroPython unix port: a board whose NTP request failed at
boot must not stay unsynced for the rest of its uptime."""

from __future__ import annotations

from pathlib import Path

from tests.mpy import run_micropython

FAKE_NTPTIME = """
calls = []
def settime():
    calls.append(1)
"""

RETRY = r"""
import board_hw, clock, ntptime
hw = board_hw.EspHardware({})
c = clock.Clock()
c.synced = False  # as on a board whose NTP request failed at boot (internet not up yet)
for t in (100, 101, 159, 160, 300):  # seconds after 2000-01-01: the ESP32's unset RTC
    hw.physics(946_684_800 + t)
n = len(ntptime.calls)
for t in (0, 60, 3600, 21_599, 21_600, 30_000):  # once set: again every 6 hours (drift)
    hw.physics(1_750_000_000 + t)
c.now()
print("RESULT", n, len(ntptime.calls), c.synced)
"""


def test_ntp_is_retried_until_the_clock_is_set(tmp_path: Path) -> None:
    # before: NTP was tried once, at boot (provision.network_up); if the internet link was not up
    # yet (Wi-Fi back before the WAN after a power cut) the board ran on its unset RTC for good:
    # every reading stamped in 2000 (the coordinator refuses them as too old), every order held
    # as not yet valid, and ``synced`` never became True even when something set the clock later.
    # Nor was a set clock ever set again: an ESP32's crystal drifts minutes a year
    (tmp_path / "ntptime.py").write_text(FAKE_NTPTIME)
    out = run_micropython(RETRY, heap="64k", cwd=tmp_path).stdout
    assert out.split("RESULT")[1].split() == ["3", "5", "True"], out


STATUS_AFTER_STEP_BACK = r"""
import app
from clock import SimClock
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
