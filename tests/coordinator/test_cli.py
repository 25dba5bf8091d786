"""The operator's commands: members, enrolment approval, bills, ledger verify."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.cli import main
from coordinator.ledger import Ledger
from coordinator.market import Tariff
from coordinator.transaction.settlement import settle
from sim.board import VirtualBoard
from tests.coordinator.readings import store

START = 1_764_547_200  # 2025-12-01 00:00 UTC


def config(tmp: Path) -> Path:
    p = tmp / "c.toml"
    p.write_text('[coordinator]\ngrid = "g1"\nledger = "l.db"\n[market]\nfixed_per_day = 5000000000\n')
    return p


def test_members_bills_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path)
    assert (
        main(
            ["members", "add", "--config", str(cfg), "--id", "alice", "--name", "Alice", "--feeder", "f1"]
            + ["--joined", "2025-12-01"]  # fixed charges from that day (default: when added)
        )
        == 0
    )
    assert (
        main(
            [
                "members",
                "add",
                "--config",
                str(cfg),
                "--id",
                "bob",
                "--name",
                "Bob",
                "--role",
                "consumer",
                "--max-buy",
                "18000",
                "--subscription-per-day",
                "2000000000",
                "--joined",
                "2025-12-01",
            ]
        )
        == 0
    )
    assert main(["members", "add", "--config", str(cfg), "--id", "Bad Id", "--name", "x"]) == 2
    assert "not an identifier" in capsys.readouterr().err
    boards = {
        "alice": VirtualBoard("g1", "m-alice", bytes([1]) * 32, lambda t: -3000),
        "bob": VirtualBoard("g1", "m-bob", bytes([2]) * 32, lambda t: 1500),
    }
    with Ledger.open(tmp_path / "l.db") as led:
        for b in boards.values():
            led.add_board(b.board, "virtual", b.key.public, now=START)  # asked to enrol: pending
    for m, b in boards.items():
        assert main(["members", "approve", "--config", str(cfg), "--board", b.board, "--member", m]) == 0
    assert main(["members", "list", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "board m-alice" in out and "active" in out and "member alice" in out
    with Ledger.open(tmp_path / "l.db") as led:
        store(led, boards.values(), range(START, START + 3601, 60))
        for q in range(4):
            settle(
                led, START + 900 * q, 900, "pairwise", Tariff(4000, 20750, 6000, 3000), {}, now=START + 3600
            )
    assert (
        main(["bill", "--config", str(cfg), "--member", "bob", "--from", "2025-12-01", "--to", "2025-12-02"])
        == 0
    )
    out = capsys.readouterr().out
    assert "peergrid statement for bob" in out and "Energy bought from community members" in out
    assert "Fixed charge" in out and "-0.05 CHF" in out  # 5e9 nano-cent = 5 cents for one day
    assert "Subscription" in out and "-0.02 CHF" in out
    assert main(["bill", "--config", str(cfg), "--from", "2025-12-01", "--to", "2025-12-02", "--csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("member,") and any(r.startswith("alice,") for r in rows)
    assert main(["bill", "--config", str(cfg), "--from", "2025-12-01", "--to", "2025-12-02", "--issue"]) == 2
    assert "not settled to its end" in capsys.readouterr().err  # only the first hour is settled
    with Ledger.open(tmp_path / "l.db") as led:
        for q in range(4, 96):
            settle(
                led, START + 900 * q, 900, "pairwise", Tariff(4000, 20750, 6000, 3000), {}, now=START + 86_400
            )
    assert main(["bill", "--config", str(cfg), "--from", "2025-12-01", "--to", "2025-12-02", "--issue"]) == 0
    capsys.readouterr()
    assert main(["bill", "--config", str(cfg), "--from", "2025-12-01", "--to", "2025-12-02", "--issue"]) == 2
    assert "already issued" in capsys.readouterr().err
    with Ledger.open(tmp_path / "l.db") as led:
        assert led._conn.execute("SELECT count(*) FROM invoices").fetchone()[0] == 2
    assert (
        main(["bill", "--config", str(cfg), "--member", "zoe", "--from", "2025-12-01", "--to", "2025-12-02"])
        == 2
    )
    assert "no member 'zoe'" in capsys.readouterr().err
    assert main(["bill", "--config", str(cfg), "--from", "12/01/2025", "--to", "2025-12-02"]) == 2
    assert "is not YYYY-MM-DD" in capsys.readouterr().err
    assert main(["ledger", "verify", "--config", str(cfg)]) == 0
    assert "0 problems" in capsys.readouterr().out
    with Ledger.open(tmp_path / "l.db") as led:  # tamper with a stored signature
        led._conn.execute("DROP TRIGGER readings_append_only_u")
        led._conn.execute("UPDATE readings SET sig = zeroblob(64) WHERE board_id='m-bob' AND seq=7")
    assert main(["ledger", "verify", "--config", str(cfg)]) == 1
    assert "m-bob seq 7: signature does not verify" in capsys.readouterr().out
