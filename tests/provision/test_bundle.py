"""``peergrid board bundle`` and ``flash``: reproducible bundles, first-boot keys on the unix port."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from coordinator.cli import main
from coordinator.ledger import Ledger
from coordinator.provision import bundle, enrol, flash
from coordinator.provision.errors import ProvisionError
from coordinator.transaction.ingest_service import IngestService
from protocol import crypto
from tests.broker import Mosquitto

HERE = Path(__file__).resolve().parent


def tree(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def inputs(**kw: object) -> bundle.Inputs:
    base: dict[str, object] = {
        "board_id": "m01",
        "board_file": bundle.board_file("esp32-devkitc-pzem004t"),
        "grid": "g1",
        "coordinator_key": bytes(range(32)),
        "broker": bundle.Broker("pi.local", 8883, "m01", "secret", b"\x30\x82fake-der"),
        "wifi_ssid": "home",
        "wifi_password": "wifi-pw",
    }
    base.update(kw)
    return bundle.Inputs(**base)  # type: ignore[arg-type]


def test_same_inputs_give_byte_identical_bundles(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    man = bundle.build(inputs(), a)
    bundle.build(inputs(), b)
    assert tree(a) == tree(b) and bundle.digest(a) == bundle.digest(b)
    assert man["arch"] == "xtensawin"  # from the board file's mcu = "esp32"
    files = tree(a)
    # what a board needs, compiled; nothing the board must not carry
    assert {"main.py", "app.mpy", "provision.mpy", "drivers/pzem004t.mpy", "protocol/frame.mpy"} <= set(files)
    assert not any(n.startswith("fakes/") or n.endswith("_c.mpy") or n == "key.bin" for n in files)
    assert b"/tmp" not in b"".join(files.values()) and str(tmp_path).encode() not in b"".join(files.values())
    s = json.loads(files["settings.json"])
    assert s == {
        "board": "m01",
        "grid": "g1",
        "coordinator_key": bytes(range(32)).hex(),
        "broker": {
            "host": "pi.local",
            "port": 8883,
            "keepalive": 60,
            "user": "m01",
            "tls": True,
            "ca": "ca.der",
        },
        "wifi": {"ssid": "home"},
    }
    # the passwords are in a file of their own, which an ESP32 moves into NVS on first boot
    assert json.loads(files["secrets.json"]) == {"broker_password": "secret", "wifi_password": "wifi-pw"}
    assert b"secret" not in files["settings.json"] and b"wifi-pw" not in files["settings.json"]
    listed = json.loads(files["MANIFEST.json"])["files"]
    assert set(listed) == set(files) - {"MANIFEST.json"}
    # another input changes only what it concerns
    bundle.build(inputs(wifi_ssid="other"), c)
    changed = {n for n in files if tree(c).get(n) != files[n]}
    assert changed == {"settings.json", "MANIFEST.json"}


def test_rebuild_keeps_what_the_board_wrote_and_refuses_foreign_dirs(tmp_path: Path) -> None:
    out = tmp_path / "b"
    bundle.build(inputs(), out)
    (out / "key.bin").write_bytes(b"k" * 32)  # a unix-port board ran here
    bundle.build(inputs(broker=bundle.Broker("10.0.0.2", 1883)), out)
    assert (out / "key.bin").read_bytes() == b"k" * 32 and not (out / "ca.der").exists()
    other = tmp_path / "docs"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ProvisionError, match="not empty and holds no bundle"):
        bundle.build(inputs(), other)
    with pytest.raises(ProvisionError, match="no board type 'nope'"):
        bundle.board_file("nope")
    with pytest.raises(ProvisionError, match="board id 'Bad Id'"):
        bundle.build(inputs(board_id="Bad Id"), tmp_path / "x")
    with pytest.raises(ProvisionError, match="arch 'z80'"):
        bundle.build(inputs(arch="z80"), tmp_path / "y")


def test_flash_on_unix_port_first_boot_key_kept_and_rotated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text('[coordinator]\ngrid = "g1"\nledger = "l.db"\n')
    out = tmp_path / "bundle"
    argv = ["board", "bundle", "--board", str(HERE / "board.toml"), "--id", "m07", "--config", str(cfg)]
    assert main([*argv, "--broker", "127.0.0.1:1883", "--out", str(out), "--arch", "x64"]) == 0
    coord = crypto.SigningKey((tmp_path / "coordinator.key").read_bytes()).public
    assert json.loads((out / "settings.json").read_text())["coordinator_key"] == coord.hex()
    board = tmp_path / "board"
    first = flash.flash(out, f"unix:{board}")
    seed = (board / "key.bin").read_bytes()
    assert first.created and len(seed) == 32 and first.pubkey == crypto.SigningKey(seed).public
    again = flash.flash(out, f"unix:{board}")  # re-flashing (an upgrade) keeps the key
    assert not again.created and again.pubkey == first.pubkey
    capsys.readouterr()
    assert main(["board", "flash", "--bundle", str(out), "--port", f"unix:{board}", "--new-key"]) == 0
    text = capsys.readouterr().out
    new = crypto.SigningKey((board / "key.bin").read_bytes()).public
    assert (
        new != first.pubkey
        and f"board rotate-key --config SITE.toml --board m07 --pubkey {new.hex()}" in text
    )
    # a serial flash is one mpremote run: copy every top-level entry, first boot, reset
    argv = flash.mpremote_argv(out, "/dev/ttyUSB0")
    cp = argv[argv.index("cp") + 2 : argv.index(":")]
    assert cp == sorted({n.split("/")[0] for n in tree(out)}) and "key.bin" not in cp
    assert argv[-4:] == ["exec", flash.FIRST_BOOT, "+", "reset"]


def test_parse_pubkey_and_broken_bundle(tmp_path: Path) -> None:
    key = bytes(range(32))
    assert flash.parse_pubkey(f"boot\npeergrid-pubkey {key.hex()} kept\n") == (key, False)
    with pytest.raises(ProvisionError, match="printed no public key"):
        flash.parse_pubkey("Traceback: MemoryError")
    with pytest.raises(ProvisionError, match="not a bundle"):
        flash.flash(tmp_path, f"unix:{tmp_path / 'b'}")


def test_romfs_bundle_runs_within_the_firmware_heap_and_survives_a_key_rotation(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    """With ``--romfs`` the code runs in place from the image (as from a board's ROMFS
    partition): the whole runtime boots and publishes within the firmware tests' heap. Then the
    board gets a new key (``flash --new-key``, ``rotate-key``) while the coordinator runs: its
    readings go on being accepted, and the ledger verifies both keys' readings."""
    from tests.mpy import FIRMWARE_HEAP_NOW
    from tests.provision.test_end_to_end import BOARD_RUN, FAKES

    inp = inputs(
        board_file=HERE / "board.toml",
        broker=bundle.Broker("127.0.0.1", mosquitto.port),
        arch="x64",
        romfs=True,
        wifi_ssid=None,
    )
    out, board = tmp_path / "bundle", tmp_path / "board"
    man = bundle.build(inp, out)
    assert man["romfs"] is True and not any(n.endswith(".mpy") for n in tree(out))
    again = tmp_path / "again"
    bundle.build(inp, again)
    assert tree(again) == tree(out)  # the image is reproducible too
    key = flash.flash(out, f"unix:{board}").pubkey
    shutil.copytree(FAKES, tmp_path / "lib" / "fakes")
    site = tmp_path / "site.toml"
    site.write_text('[coordinator]\ngrid = "g1"\nledger = "l.db"\n')
    assert main(["members", "add", "--config", str(site), "--id", "alice", "--name", "Alice"]) == 0
    assert (
        main(
            [
                "board",
                "enroll",
                "--config",
                str(site),
                "--board",
                "m01",
                "--member",
                "alice",
                "--pubkey",
                key.hex(),
            ]
        )
        == 0
    )
    env = flash.unix_env(board)
    env["MICROPYPATH"] = f"{board}:{tmp_path / 'lib'}:.frozen"
    argv = flash.unix_argv(board, FIRMWARE_HEAP_NOW, BOARD_RUN % 4)

    async def run_board(svc: IngestService) -> tuple[int, int]:
        """Run the board; (readings acknowledged by the broker, readings left in its spool)."""
        before = svc.stored
        proc = await asyncio.to_thread(
            subprocess.run, argv, cwd=board, env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0 and "RESULT" in proc.stdout, proc.stdout + proc.stderr
        acked, spooled = (int(x) for x in proc.stdout.split("RESULT")[1].split()[:2])
        for _ in range(50):
            if svc.stored >= before + acked:
                break
            await asyncio.sleep(0.1)
        return acked, spooled

    async def scenario(ledger: Ledger) -> tuple[list[int], IngestService]:
        stop = asyncio.Event()
        svc = IngestService(ledger, "g1", mosquitto.address, flush_s=0.05)
        tasks = [
            asyncio.create_task(svc.run(stop)),
            asyncio.create_task(enrol.watch(svc.ingest, ledger, stop, 0.1)),
        ]
        await asyncio.sleep(0.5)
        sent = [await run_board(svc)]
        await asyncio.sleep(1.1)  # key validity is recorded in whole seconds
        assert main(["board", "flash", "--bundle", str(out), "--port", f"unix:{board}", "--new-key"]) == 0
        new = capsys.readouterr().out.split("--pubkey ")[1].split()[0]
        assert main(["board", "rotate-key", "--config", str(site), "--board", "m01", "--pubkey", new]) == 0
        await asyncio.sleep(0.5)  # the running coordinator takes the new key from the ledger
        sent.append(await run_board(svc))
        stop.set()
        await asyncio.gather(*tasks)
        return sent, svc

    with Ledger.open(tmp_path / "l.db") as ledger:
        ((acked1, spooled1), (acked2, spooled2)), svc = asyncio.run(scenario(ledger))
        assert len(ledger.keys_of("m01")) == 2
        stored = ledger.count_readings()
    # every acknowledged reading of both keys is stored once; a reading published as the first run
    # stopped (its PUBACK not read yet, so still spooled) is stored at most once more, by either run
    assert acked1 >= 1 and acked2 >= 1 and spooled2 == 0
    assert acked1 + acked2 <= stored == svc.stored <= acked1 + acked2 + spooled1
    # such a reading, stored in the first run and replayed by the second, is refused as a duplicate
    assert set(svc.ingest.rejected) <= {"duplicate"} and svc.ingest.rejected["duplicate"] <= spooled1
    assert svc.ingest.accepted["Enrol"] == 2
    capsys.readouterr()
    assert main(["ledger", "verify", "--config", str(site)]) == 0
    assert f"{stored} readings, 0 intervals, 0 problems" in capsys.readouterr().out
