"""The README's demo, as a new user runs it: the command on the embedded broker (a shortened day),
and the same round on Mosquitto. Readings stored once, the bad frames refused, money sums to zero,
the ledger verifies clean, and the plots and the HTML report are written."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sim import demo
from sim.errors import SimError
from tests.broker import Mosquitto


def test_demo_command_on_embedded_broker(tmp_path: Path) -> None:
    for needed in ("demandlib", "pvlib"):  # the demo's profiles: the sim extra
        pytest.importorskip(needed, reason="the demo needs the sim extra")
    out_dir = tmp_path / "report"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "coordinator.cli",
            "demo",
            "--hours",
            "2",
            "--homes",
            "8",
            "--out",
            str(out_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "embedded broker" in out and "8 boards" in out
    # 8 boards, a reading at the start and every 5 minutes for 2 h
    assert "8 intervals settled" in out and "200 signed readings stored" in out
    assert "200 signed by the boards: 200 stored once, 0 stale" in out and "0 lost" in out
    assert "refused   1 bad_signature, 1 replay, 1 wrong_topic" in out
    assert "summary   OK" in out and "money sums to 0" in out and "0 problems" in out
    assert "self-sufficiency" in out and "average local price" in out
    bills = [ln for ln in out.splitlines() if ln.startswith("  ") and "total" in ln]
    assert len(bills) == 8 + 3  # members, supplier, grid operator, and their sum
    assert bills[-1].split()[-1] == "+0.00"
    for name in ("prices.svg", "flows.svg", "self_sufficiency.svg", "bills.svg"):
        root = ET.fromstring((out_dir / name).read_text())  # well-formed SVG
        assert root.tag.endswith("svg") and len(root) > 10
    html = (out_dir / "report.html").read_text()
    assert "<svg" in html and "Invariants" in html and "summary   OK" in html
    figures = json.loads((out_dir / "summary.json").read_text())
    assert figures["members"] == 8 and figures["invariants_ok"] is True
    assert sum(figures["bills_nanocent"].values()) == 0


def test_demo_on_mosquitto(mosquitto: Mosquitto, tmp_path: Path) -> None:
    out = io.StringIO()
    result = asyncio.run(
        demo.run(broker=mosquitto.address, hours=1, homes=6, step_s=60, out_dir=tmp_path / "r", out=out)
    )
    assert result.ok, out.getvalue()
    assert result.accepted == result.expected == 61 * 6
    assert result.rejected == {"bad_signature": 1, "replay": 1, "wrong_topic": 1}
    assert result.money_sum == 0 and result.intervals == 4
    assert 0 <= result.figures["self_sufficiency"] <= 1  # midnight: no sun yet
    assert (tmp_path / "r" / "report.html").exists()


def test_demo_with_every_fault_on_its_own_mosquitto(tmp_path: Path) -> None:
    out = io.StringIO()
    result = asyncio.run(
        demo.run(hours=2, homes=6, mosquitto=True, faults=True, out_dir=tmp_path / "r", out=out)
    )
    text = out.getvalue()
    assert result.ok, text
    for what in ("offline", "broker restarted", "rebooted", "killed", "forged"):
        assert what in text
    # refused for what they are (once more if the kill came before the refusal was acknowledged)
    assert result.rejected["bad_signature"] >= 1 and result.rejected["wrong_topic"] >= 1
    assert " 0 lost" in text and "summary   OK" in text
    with pytest.raises(SimError, match="--mosquitto"):  # the embedded broker cannot take them
        asyncio.run(demo.run(hours=1, homes=2, faults=True, out_dir=None, out=io.StringIO()))
