"""The peer-to-system commands: a change and a request accepted, bad ones refused with the member
and field named (exit 2), nothing stored for them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from coordinator.cli import main
from coordinator.ledger import Ledger, flex_requests, member_changes


def _site(tmp_path: Path) -> Path:
    cfg = tmp_path / "site.toml"
    cfg.write_text('[coordinator]\ngrid = "g1"\nledger = "ledger.db"\n[market]\ninterval_s = 900\n')
    assert (
        main(["members", "add", "--config", str(cfg), "--id", "alice", "--name", "A", "--feeder", "f1"]) == 0
    )
    enrol = ["board", "enroll", "--config", str(cfg), "--member", "alice", "--board", "b-alice"]
    assert main([*enrol, "--pubkey", "11" * 32, "--type", "virtual"]) == 0
    return cfg


def test_members_set_apply_and_their_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _site(tmp_path)
    c = str(cfg)
    assert main(["members", "set", "--config", c, "--id", "alice", "--pv", '{"kwp": 6}', "--by", "t"]) == 0
    assert "in force from" in capsys.readouterr().out
    assert (
        main(
            [
                "members",
                "set",
                "--config",
                c,
                "--id",
                "alice",
                "--storage",
                '{"capacity_mwh": -5, "max_charge_w": 1000}',
            ]
        )
        == 2
    )
    assert "member 'alice' storage.capacity_mwh must be an integer > 0, got -5" in capsys.readouterr().err
    assert main(["members", "set", "--config", c, "--id", "zed", "--pv", '{"kwp": 6}']) == 2
    assert "no member 'zed'" in capsys.readouterr().err
    assert main(["members", "set", "--config", c, "--id", "alice", "--pv", "{kwp"]) == 2
    assert "--pv is not JSON" in capsys.readouterr().err
    f = tmp_path / "alice.toml"
    f.write_text('id = "alice"\n[deferrable]\nw = 2000\nrelay = 9\n')
    assert main(["members", "apply", "--config", c, str(f)]) == 2
    assert "deferrable.relay must be an integer in 0..7, got 9" in capsys.readouterr().err
    f.write_text('id = "alice"\n[deferrable]\nw = 2000\n')
    assert main(["members", "apply", "--config", c, str(f), "--by", "t"]) == 0
    assert main(["members", "history", "--config", c, "--id", "alice"]) == 0
    assert "by cli:t" in capsys.readouterr().out
    with Ledger.open(tmp_path / "ledger.db") as led:
        changes = member_changes.history(led, "alice")
    assert [c_.prefs for c_ in changes] == ['{"deferrable": {"w": 2000}}', '{"pv": {"kwp": 6}}']


def test_flex_request_and_its_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _site(tmp_path)
    now = int(time.time())
    start = now - now % 900 + 2 * 900
    base = [
        "flex",
        "request",
        "--config",
        str(cfg),
        "--point",
        "f1",
        "--direction",
        "reduce",
        "--power-w",
        "2000",
        "--intervals",
        "2",
        "--price-cap",
        "30000",
    ]
    assert main([*base, "--start", str(start + 1)]) == 2
    assert "not an interval start" in capsys.readouterr().err
    assert main([*base, "--start", str(start - 3 * 900)]) == 2
    assert "not in the future" in capsys.readouterr().err
    assert main([*base, "--start", str(start), "--id", "r1"]) == 0
    assert main([*base, "--start", str(start + 900), "--id", "r2"]) == 2
    assert "overlaps request 'r1'" in capsys.readouterr().err
    assert main(["flex", "list", "--config", str(cfg)]) == 0
    assert "r1" in capsys.readouterr().out
    with Ledger.open(tmp_path / "ledger.db") as led:
        assert [r.request_id for r in flex_requests.requests(led)] == ["r1"]
