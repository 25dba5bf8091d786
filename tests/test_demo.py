"""The README's demo, as a new user runs it: embedded broker, and the same round on Mosquitto."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys

from coordinator import demo
from tests.broker import Mosquitto


def test_demo_command_on_embedded_broker() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "demo", "--hours", "1", "--step", "120"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "embedded broker" in out and out.count("enrolled  m-") == 4
    assert "124 of 124 signed readings verified and stored" in out
    assert "refused: 1 bad_signature, 1 replay, 1 wrong_topic" in out
    intervals = [ln for ln in out.splitlines() if ln.startswith("interval")]
    assert len(intervals) == 4 and all("Rp/kWh" in ln for ln in intervals)
    assert "summary   OK" in out and "money sums to 0" in out and "0 problems" in out


def test_demo_on_mosquitto(mosquitto: Mosquitto) -> None:
    out = io.StringIO()
    result = asyncio.run(demo.run(broker=mosquitto.address, hours=1, step_s=60, out=out))
    assert result.ok, out.getvalue()
    assert result.accepted == result.expected == 61 * 4
    assert result.rejected == {"bad_signature": 1, "replay": 1, "wrong_topic": 1}
    assert result.money_sum == 0 and result.intervals == 4
    # the PV homes sell, the bakery buys: local trade happened in every interval
    lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("interval")]
    assert all("local   0.000 kWh" not in ln for ln in lines)
