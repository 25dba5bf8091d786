"""Done when: five stand-in boards provisioned from one batch file, one failing on purpose, and the
summary, the ledger's enrolled keys and each board's first stored reading agree.

Everything is real but the boards: Mosquitto with the site's TLS listener, passwords and ACLs;
``peergrid coordinator run`` as a process; the ``peergrid board provision --fleet`` command with
the real esptool and mpremote on the stand-ins' pseudo-terminals (tests/provision/standin.py),
the bundles' firmware running on the MicroPython unix port after each board's reset and sending
its signed readings through TLS. The third board's cable comes out during the copy. Running the
batch again (the operator plugs in a good board for the failed id) provisions only that one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator import config
from coordinator.cli import main
from coordinator.ledger import Ledger
from protocol import crypto
from tests.provision.conftest import SecureBroker
from tests.provision.standin import Personality, StandIn
from tests.provision.test_end_to_end import site_toml

HERE = Path(__file__).resolve().parent
MEMBERS = ["alice", "bob", "carol", "dave", "erin"]
BOARDS = [f"p{i}" for i in range(1, 6)]
FAILING = "p3"


def start_coordinator(site: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coordinator.cli",
            "coordinator",
            "run",
            "--config",
            str(site),
            "--ingest-only",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def coordinator(tmp_path: Path, secure_broker: SecureBroker) -> Iterator[Path]:
    site = site_toml(tmp_path, secure_broker)
    for m in MEMBERS:
        assert main(["members", "add", "--config", str(site), "--id", m, "--name", m.title()]) == 0
    proc = start_coordinator(site, tmp_path / "coordinator.log")
    try:
        yield site
    finally:
        proc.terminate()
        proc.wait(20)


def batch_file(tmp: Path) -> Path:
    p = tmp / "fleet.toml"
    rows = "".join(
        f'[[boards]]\nid = "{b}"\nmember = "{m}"\n\n' for b, m in zip(BOARDS, MEMBERS, strict=True)
    )
    p.write_text(f'[defaults]\nboard = "{HERE / "board.toml"}"\n\n' + rows)
    return p


def provision(site: Path, broker: SecureBroker, fleet: Path, out: Path, ports: list[str]) -> list[str]:
    argv = ["board", "provision", "--config", str(site), "--fleet", str(fleet), "--out", str(out)]
    argv += ["--broker-dir", str(broker.site.directory), "--arch", "x64", "--romfs", "--wait", "90"]
    argv += ["--broker-reload", f"kill -HUP {broker.proc.pid}"]
    for p in ports:
        argv += ["--port", p]
    code = main(argv)
    return [str(code)]


def summary(out: str) -> dict[str, tuple[str, str, str]]:
    """The summary table's rows: board -> (member, result, detail)."""
    rows = {}
    lines = out.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("board ") and "result" in line)
    for line in lines[start + 1 :]:
        parts = line.split(None, 3)
        if len(parts) >= 3 and parts[0] in BOARDS:
            rows[parts[0]] = (parts[1], parts[2], parts[3] if len(parts) > 3 else "")
    return rows


def test_five_boards_from_one_batch_one_failing_summary_keys_and_readings_agree(
    tmp_path: Path,
    secure_broker: SecureBroker,
    coordinator: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    site = coordinator
    fleet = batch_file(tmp_path)
    stand = {
        b: StandIn(tmp_path / "bench" / b, Personality(unplug_after_writes=3 if b == FAILING else None))
        for b in BOARDS
    }
    try:
        capsys.readouterr()
        code = provision(site, secure_broker, fleet, tmp_path / "bundles", [stand[b].port for b in BOARDS])
        out = capsys.readouterr().out
        assert code == ["1"], out  # one board failed
        rows = summary(out)
        assert {b: r[1] for b, r in rows.items()} == {
            b: "failed" if b == FAILING else "ok" for b in BOARDS
        }, out
        assert "copy did not finish" in rows[FAILING][2]
        assert "4 ok, 1 failed, 0 skipped" in out
        assert f"[3/5] {FAILING}: FAILED (copy_failed)" in out  # the progress display named it too

        cfg = config.load(site)
        with Ledger.open(cfg.ledger) as ledger:
            active = {b.board_id: b for b in ledger.boards("active")}
            assert set(active) == set(BOARDS) - {FAILING}
            for b, m in zip(BOARDS, MEMBERS, strict=True):
                if b == FAILING:
                    assert ledger.first_reading(b) is None
                    continue
                # the key the board made on its flash, the key the ledger holds, the key the summary shows
                key = crypto.SigningKey((stand[b].fs / "key.bin").read_bytes()).public
                assert active[b].pubkey == key and active[b].member_id == m
                assert rows[b][2].startswith(f"key {key.hex()[:16]}...")
                first = ledger.first_reading(b)
                assert first is not None
                assert rows[b][2].endswith(f"first reading seq {first.seq}")
                # and the reading was signed with that key: the coordinator verified it on ingest
                r = ledger.latest_reading(b)
                assert r is not None and r.board == b
            # secrets: on the board's NVS, not in its filesystem
            fs = stand["p1"].fs
            assert not (fs / "secrets.json").exists()
            assert "password" not in (fs / "settings.json").read_text()
            nvs = json.loads((stand["p1"].state / "nvs-peergrid.json").read_text())
            assert bytes.fromhex(nvs["broker_password"]).decode() == secure_broker.site.password("p1")

        # the operator plugs a good board in for the failed id and runs the same batch again
        replacement = StandIn(tmp_path / "bench" / "p3-again")
        try:
            capsys.readouterr()
            assert provision(site, secure_broker, fleet, tmp_path / "bundles", [replacement.port]) == ["0"]
            again = summary(capsys.readouterr().out)
            assert {b: r[1] for b, r in again.items()} == {
                b: "ok" if b == FAILING else "skipped" for b in BOARDS
            }
            with Ledger.open(cfg.ledger) as ledger:
                assert {b.board_id for b in ledger.boards("active")} == set(BOARDS)
                key = crypto.SigningKey((replacement.fs / "key.bin").read_bytes()).public
                assert {b.board_id: b.pubkey for b in ledger.boards("active")}[FAILING] == key
                assert ledger.first_reading(FAILING) is not None
        finally:
            replacement.close()
    finally:
        for s in stand.values():
            s.close()
    assert os.path.exists(tmp_path / "coordinator.log")


def test_run_virtual_board_process_against_a_running_coordinator(
    tmp_path: Path, secure_broker: SecureBroker, coordinator: Path
) -> None:
    """``peergrid board run-virtual``: the real firmware on the unix port, as a process, enrolled
    and sending signed readings through TLS to ``peergrid coordinator run``."""
    site, out = coordinator, tmp_path / "v1"
    argv = ["board", "bundle", "--board", str(HERE / "board.toml"), "--id", "v1", "--config", str(site)]
    assert (
        main([*argv, "--broker-dir", str(secure_broker.site.directory), "--out", str(out), "--arch", "x64"])
        == 0
    )
    secure_broker.reload()  # the board's new credentials
    board_dir = tmp_path / "v1-board"
    cmd = [sys.executable, "-m", "coordinator.cli", "board", "run-virtual", "--bundle", str(out)]
    cmd += ["--dir", str(board_dir), "--config", str(site), "--member", "alice", "--seconds", "8"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    key = crypto.SigningKey((board_dir / "key.bin").read_bytes()).public
    assert f"public key {key.hex()} (generated on first boot)" in proc.stdout
    assert "board v1 enrolled for member alice" in proc.stdout
    sent = int(proc.stdout.split("stopped after ")[1].split()[0])
    assert sent >= 2
    # the unix port keeps its passwords in secrets.json (no NVS there)
    assert json.loads((board_dir / "secrets.json").read_text())["broker_password"]
    cfg = config.load(site)
    with Ledger.open(cfg.ledger) as ledger:
        seqs: set[int] = set()
        for _ in range(100):  # the coordinator stores what it received (its ingest flushes every 50 ms)
            seqs = {r.seq for r, _ in ledger.readings_desc("v1", 100)}
            if len(seqs) >= sent - 2:
                break
            time.sleep(0.1)
        # the board's readings are stored, verified with the enrolled key; what it sent before the
        # running coordinator saw the enrolment (its registry check runs every 2 s) is refused
        assert len(seqs) >= max(2, sent - 2) and seqs <= set(range(1, sent + 1)), (seqs, proc.stdout)
        assert {b.board_id: b.pubkey for b in ledger.boards("active")} == {"v1": key}
