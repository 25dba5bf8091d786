"""``peergrid ledger verify`` and ingest agree on a board clock stepped back (NTP correcting a
clock that ran ahead): ingest stores such readings (sequence numbers and registers order them,
not timestamps), settlement counts their energy once, and verify reports the step as a warning,
not a problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.cli import main
from coordinator.ledger import Ledger
from coordinator.ledger.verify import verify
from coordinator.transaction.ingest import Ingest
from coordinator.transaction.settlement import settle
from protocol import crypto, frame, messages
from sim.board import VirtualBoard
from tests.coordinator.test_settlement import START, TARIFF


def test_a_clock_step_back_is_stored_settled_once_and_only_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    led = Ledger.open(tmp_path / "l.db")
    led.add_member("carol", "Carol", "consumer", now=START)
    b = VirtualBoard("g1", "m01", bytes([5]) * 32, lambda t: 1_200)
    led.add_board("m01", "virtual", b.key.public, now=START, member_id="carol", status="active")
    ingest = Ingest("g1", now=lambda: START + 3600)
    ingest.enrol("m01", b.key.public)
    batch = []
    for t in range(START, START + 3601, 60):
        b.skew = 300 if START + 600 <= t < START + 1800 else 0  # ran 5 min ahead, then NTP set it back
        topic, fr = b.reading(t)
        r = ingest.handle(topic, fr)
        assert isinstance(r, messages.Reading), ingest.rejected  # accepted, as on the wire
        batch.append((r, bytes(frame.split(fr)[1])))
    led.add_readings(batch)
    assert led.count_readings() == 61
    rep = verify(led, "g1")
    assert rep.ok and rep.problems == []
    back = [w for w in rep.warnings if "clock stepped back" in w]
    assert len(back) == 1 and back[0].startswith("m01 seq 30:")
    for q in range(4):
        settle(led, START + 900 * q, 900, "pairwise", TARIFF, {}, now=START + 3600)
    imp = led._conn.execute("SELECT sum(e_imp) FROM deliveries WHERE party='carol'").fetchone()[0]
    first, last = led.register_at("m01", START), led.latest_reading("m01")
    assert first is not None and last is not None
    assert imp == last.e_imp - first.e_imp  # every mWh settled once across the step
    led.close()
    cfg = tmp_path / "c.toml"
    cfg.write_text('[coordinator]\ngrid = "g1"\nledger = "l.db"\n')
    capsys.readouterr()
    assert main(["ledger", "verify", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "note    m01 seq 30: clock stepped back" in out and "0 problems, 1 warnings" in out


def test_a_forged_reading_is_still_a_problem(tmp_path: Path) -> None:
    led = Ledger.open(tmp_path / "l.db")
    b = VirtualBoard("g1", "m01", bytes([5]) * 32, lambda t: 500)
    led.add_board("m01", "virtual", crypto.SigningKey(bytes([6]) * 32).public, now=START, status="active")
    topic, fr = b.reading(START)
    r = messages.decode(bytes(frame.split(fr)[0]))
    assert isinstance(r, messages.Reading)
    led.add_readings([(r, bytes(frame.split(fr)[1]))])
    rep = verify(led, "g1")
    assert not rep.ok and "signature does not verify" in rep.problems[0]
    led.close()
