"""Enrolment, key rotation and board replacement: old readings keep verifying
(``peergrid ledger verify``), and a running ingest follows the registry without a restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from coordinator.cli import main
from coordinator.ledger import Ledger
from coordinator.provision import enrol
from coordinator.provision.errors import ProvisionError
from coordinator.transaction.ingest import Ingest
from protocol import crypto
from sim.board import VirtualBoard
from tests.coordinator.readings import store

START = 1_764_547_200


def site(tmp: Path) -> Path:
    p = tmp / "site.toml"
    p.write_text('[coordinator]\ngrid = "g1"\nledger = "l.db"\n')
    assert main(["members", "add", "--config", str(p), "--id", "alice", "--name", "Alice"]) == 0
    return p


def cli(cfg: Path, *args: str) -> int:
    return main(["board", args[0], "--config", str(cfg), *args[1:]])


def test_rotate_and_replace_keep_old_readings_verifiable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = site(tmp_path)
    start = int(time.time()) + 60  # the CLI records keys as valid from now: readings come after
    b = VirtualBoard("g1", "m01", bytes([7]) * 32, lambda t: 1200)
    assert cli(cfg, "enroll", "--board", "m01", "--member", "alice", "--pubkey", b.key.public.hex()) == 0
    assert (
        cli(cfg, "enroll", "--board", "m01", "--member", "alice", "--pubkey", b.key.public.hex()) == 0
    )  # again
    with Ledger.open(tmp_path / "l.db") as led:
        store(led, [b], range(start, start + 600, 60))
    # the board's key is renewed (flash --new-key): same board, registers and sequence continue
    b.key = crypto.SigningKey(bytes([8]) * 32)
    with Ledger.open(tmp_path / "l.db") as led:
        enrol.rotate_key(led, "m01", b.key.public, now=start + 600)
        store(led, [b], range(start + 600, start + 1200, 60))
    # and the hardware is replaced: a new board id takes over alice, m01 is retired with its history
    n = VirtualBoard("g1", "m09", bytes([9]) * 32, lambda t: 800)
    assert cli(cfg, "replace", "--old", "m01", "--new", "m09", "--pubkey", n.key.public.hex()) == 0
    with Ledger.open(tmp_path / "l.db") as led:
        store(led, [n], range(start + 1200, start + 1800, 60))
        assert [(x.board_id, x.status, x.member_id) for x in led.boards()] == [
            ("m01", "retired", "alice"),
            ("m09", "active", "alice"),
        ]
        keys = led.keys_of("m01")
        assert [k for k, _, _ in keys] == [crypto.SigningKey(bytes([7]) * 32).public, b.key.public]
        assert keys[0][2] == start + 600 and keys[1][2] is None
    capsys.readouterr()
    assert main(["ledger", "verify", "--config", str(cfg)]) == 0
    assert "30 readings, 0 intervals, 0 problems" in capsys.readouterr().out
    assert cli(cfg, "keys", "--board", "m01") == 0
    assert capsys.readouterr().out.count("  key ") == 2
    # a reading signed with the old key after the rotation does not verify: the key history matters
    old = VirtualBoard("g1", "m01", bytes([7]) * 32, lambda t: 1200)
    old.seq = 500  # type: ignore[attr-defined]
    with Ledger.open(tmp_path / "l.db") as led:
        store(led, [old], [start + 3600])
    assert main(["ledger", "verify", "--config", str(cfg)]) == 1
    assert "m01 seq" in capsys.readouterr().out


def test_registry_errors_are_specific(tmp_path: Path) -> None:
    site(tmp_path)
    k1, k2 = bytes([1]) * 32, bytes([2]) * 32
    with Ledger.open(tmp_path / "l.db") as led:
        with pytest.raises(ProvisionError, match="no member 'bob'"):
            enrol.enrol(led, "m01", "bob", k1, "esp32", now=START)
        led.add_board("m01", "esp32", k1, now=START)  # a board asked to enrol (pending)
        with pytest.raises(ProvisionError, match="registered with key 0101"):
            enrol.enrol(led, "m01", "alice", k2, "esp32", now=START)  # not the key on the console
        assert "enrolled" in enrol.enrol(led, "m01", "alice", k1, "esp32", now=START)
        with pytest.raises(ProvisionError, match="has had key"):
            enrol.rotate_key(led, "m01", k1, now=START + 1)
        with pytest.raises(ProvisionError, match="no enrolled board 'm02'"):
            enrol.rotate_key(led, "m02", k2, now=START + 1)
        with pytest.raises(ProvisionError, match="already registered"):
            enrol.replace(led, "m01", "m01", k2, None, now=START + 1)
        with pytest.raises(ProvisionError, match="its own"):
            enrol.replace(led, "m01", "m03", k1, None, now=START + 1)
    for bad, msg in (("zz", "not hex"), ("ab" * 31, "32 bytes")):
        with pytest.raises(ProvisionError, match=msg):
            enrol.parse_pubkey(bad)


def test_running_ingest_follows_enrolment_rotation_and_retirement(tmp_path: Path) -> None:
    site(tmp_path)
    path = tmp_path / "l.db"
    b = VirtualBoard("g1", "m01", bytes([3]) * 32, lambda t: 500)
    with Ledger.open(path) as service_ledger:  # the coordinator's connection
        ingest = Ingest("g1", now=lambda: START + 10_000)
        stop = asyncio.Event()

        async def run() -> list[str | None]:
            watcher = asyncio.create_task(enrol.watch(ingest, service_ledger, stop, every_s=0.05))
            codes: list[str | None] = []

            def send(t: int) -> None:
                before = ingest.rejected.copy()
                ingest.handle(*b.reading(t))
                new = list(ingest.rejected - before)
                codes.append(new[0] if new else None)

            send(START)  # not enrolled yet
            with Ledger.open(path) as op:  # the operator's command, another connection
                enrol.enrol(op, "m01", "alice", b.key.public, "esp32", now=START)
            await asyncio.sleep(0.3)
            send(START + 60)
            b.key = crypto.SigningKey(bytes([4]) * 32)
            send(START + 120)  # new key, not yet registered
            with Ledger.open(path) as op:
                enrol.rotate_key(op, "m01", b.key.public, now=START + 120)
            await asyncio.sleep(0.3)
            send(START + 180)
            with Ledger.open(path) as op:
                enrol.replace(op, "m01", "m02", bytes([5]) * 32, None, now=START + 200)
            await asyncio.sleep(0.3)
            send(START + 240)  # retired: refused
            stop.set()
            await watcher
            return codes

        codes = asyncio.run(run())
    assert codes == ["unknown_board", None, "bad_signature", None, "unknown_board"]
    assert set(ingest.boards) == {"m02"}


def test_enrolling_an_active_board_for_another_member_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # moving a board silently would hand its energy not settled yet to the new member
    cfg = site(tmp_path)
    assert main(["members", "add", "--config", str(cfg), "--id", "bob", "--name", "Bob"]) == 0
    key = bytes([6]) * 32
    assert cli(cfg, "enroll", "--board", "m01", "--member", "alice", "--pubkey", key.hex()) == 0
    capsys.readouterr()
    assert cli(cfg, "enroll", "--board", "m01", "--member", "bob", "--pubkey", key.hex()) == 2
    err = capsys.readouterr().err
    assert "m01 is enrolled for member alice" in err and "board retire" in err
    assert main(["members", "approve", "--config", str(cfg), "--board", "m01", "--member", "bob"]) == 2
    assert "enrolled for member alice" in capsys.readouterr().err
    with Ledger.open(tmp_path / "l.db") as led:
        assert [(b.board_id, b.status, b.member_id) for b in led.boards()] == [("m01", "active", "alice")]
        with pytest.raises(ProvisionError, match="enrolled for member alice"):
            enrol.enrol(led, "m01", "bob", key, "esp32", now=START)
        assert "already enrolled" in enrol.enrol(led, "m01", "alice", key, "esp32", now=START)  # idempotent
    # the way to move it: retire it (its readings stay alice's), enrol it under a new id for bob
    assert cli(cfg, "retire", "--board", "m01") == 0
    assert "board m01 (member alice) retired" in capsys.readouterr().out
    new = bytes([7]) * 32
    assert cli(cfg, "enroll", "--board", "m01b", "--member", "bob", "--pubkey", new.hex()) == 0
    with Ledger.open(tmp_path / "l.db") as led:
        assert [(b.board_id, b.status, b.member_id) for b in led.boards()] == [
            ("m01", "retired", "alice"),
            ("m01b", "active", "bob"),
        ]
        with pytest.raises(ProvisionError, match="no active or pending board 'm01'"):
            enrol.retire(led, "m01")
