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
        [sys.executable, "-m", "coordinator.cli", "demo", "--readings", "8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "embedded broker" in out
    assert out.count("verified  m01") == 8
    assert "rejected  1 x bad_signature" in out
    assert "rejected  1 x replay" in out
    assert "rejected  1 x wrong_topic" in out
    assert "8/8 readings verified and accepted" in out


def test_demo_on_mosquitto(mosquitto: Mosquitto) -> None:
    out = io.StringIO()
    result = asyncio.run(demo.run(broker=mosquitto.address, readings=20, step_s=60, out=out))
    assert result.accepted == 20, out.getvalue()
    assert result.rejected == {"bad_signature": 1, "replay": 1, "wrong_topic": 1}
    lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("verified")]
    # the export register never runs backwards across the round
    exports = [float(ln.split("export")[1].split()[0]) for ln in lines]
    assert exports == sorted(exports) and exports[-1] > 0
