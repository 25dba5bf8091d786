"""The ESP32 stub check (.ci/mypy-firmware) really checks the calls into MicroPython's modules:
wrong calls to machine, network and time fail it, the firmware passes it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / ".venv" / "mpy-stubs" / "stdlib"

pytestmark = pytest.mark.skipif(not STUBS.is_dir(), reason="ESP32 stubs not installed: run .ci/mypy-firmware")

WRONG = {
    "machine": "import machine\n\ndef f():\n    machine.WDT(timeout='30 s')\n",
    "network": "import network\n\ndef f():\n    network.WLAN(network.STA_IF).isconnected(1)\n",
    "time": "import time\n\ndef f():\n    return time.ticks_diff(time.ticks_ms())\n",
    "pin": "import machine\n\ndef f():\n    machine.Pin(25, machine.Pin.OUTPUT)\n",
}


def check(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / ".ci" / "mypy-firmware"), *map(str, files)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


@pytest.mark.parametrize("name", sorted(WRONG))
def test_a_wrong_call_fails_the_stub_check(tmp_path: Path, name: str) -> None:
    # before: the stubs were not on mypy's path and board_hw loaded machine with __import__, so
    # machine, network and time.ticks_* all typed as Any and any call passed
    bad = tmp_path / f"bad_{name}.py"
    bad.write_text(WRONG[name])
    proc = check(bad)
    assert proc.returncode != 0 and f"bad_{name}.py:4: error" in proc.stdout, proc.stdout + proc.stderr


def test_the_firmware_passes_the_stub_check() -> None:
    files = sorted((ROOT / "firmware").rglob("*.py"))
    proc = check(*files)
    assert proc.returncode == 0 and "Success" in proc.stdout, proc.stdout + proc.stderr
