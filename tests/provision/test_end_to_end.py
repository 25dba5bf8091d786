"""From an empty bundle directory to an enrolled board publishing accepted readings.

The operator's steps, each through the ``peergrid`` command: set up the broker (CA, TLS,
credentials, ACLs), add a member, build the board's bundle, flash it (here onto the MicroPython
unix port: the bundle directory is the board's filesystem, the firmware runs from its .mpy
files), read the key the board generated on first boot, enrol it. Then the board runs against a
real Mosquitto over TLS (mbedTLS on the unix port checks the broker against the site's CA) with
fake metering hardware, and the coordinator's ingest (password on the loopback listener)
verifies and stores its readings. A second board, with valid credentials of its own, tries to
impersonate the first: the broker drops what it publishes on the first board's topics and
withholds the first board's orders from it; what it may publish on its own topics in the first
board's name the coordinator refuses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from coordinator import config
from coordinator.cli import main
from coordinator.errors import MqttError
from coordinator.ledger import Ledger
from coordinator.provision.flash import micropython_exe, unix_env
from coordinator.service.mqtt import Connection
from coordinator.transaction.ingest_service import IngestService
from protocol import crypto, frame, messages, topics
from tests.provision.conftest import GRID, SecureBroker

HERE = Path(__file__).resolve().parent
FAKES = HERE.parent.parent / "firmware" / "fakes"
# The firmware's .mpy files are loaded into the heap here (on a board with a ROMFS partition
# they would execute from flash, as tests/romfs.py arranges for the other firmware tests)
HEAP = "256k"
RUN_S = 8

BOARD_RUN = """
import gc
import main
import provision
from board_hw import EspHardware
from clock import Clock
from fakes.hardware import FakeHardware

class Hw(FakeHardware):  # fake metering front end; TLS exactly as on the ESP32
    def tls(self, broker):
        return EspHardware.tls(self, broker)

cfg, settings = provision.load()
clock = Clock()
b = main.run(Hw(cfg, lambda now: 800), clock, clock.now() + %d)
gc.collect()
print("RESULT", b.sent, len(b.spool), b.regs.seq, b.errors)
"""


def site_toml(tmp: Path, broker: SecureBroker) -> Path:
    p = tmp / "site.toml"
    d = broker.site.directory
    p.write_text(
        f'[coordinator]\ngrid = "{GRID}"\nledger = "ledger.db"\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {broker.site.settings.local_port}\n'
        f'username = "coordinator"\npassword_file = "{d}/secrets/coordinator.password"\n'
        "[ingest]\nflush_ms = 50\n"
    )
    return p


def run_board(board_dir: Path, lib: Path) -> list[int]:
    env = unix_env(board_dir)
    env["MICROPYPATH"] = f"{board_dir}:{lib}:.frozen"  # the bundle first, then the fake hardware
    proc = subprocess.run(
        [micropython_exe(), "-X", f"heapsize={HEAP}", "-c", BOARD_RUN % RUN_S],
        cwd=board_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "RESULT" in proc.stdout, proc.stdout + proc.stderr
    return [int(x) for x in proc.stdout.split("RESULT")[1].split()]


def raw_frame(msg: messages.Message, topic: str, key: crypto.SigningKey) -> bytes:
    """A frame signed for ``topic`` whatever board the message names (``frame.seal`` refuses)."""
    body = msg.encode()
    return body + key.sign(frame.signed_bytes(msg.TYPE, topic, body))


async def impersonate(broker: SecureBroker, m02_key: crypto.SigningKey, now: int) -> dict[str, object]:
    """m02, with its own valid credentials, acting as m01."""
    seen: list[str] = []
    t_m01 = topics.board_topic(GRID, "m01", "reading")
    t_m02 = topics.board_topic(GRID, "m02", "reading")
    forged = messages.Reading(board="m01", seq=10_000, ts=now, e_imp=10**9, e_exp=0, p=0, u=230_000, flags=0)
    async with Connection(broker.board("m02"), "m01") as m02:  # even asks for m01's client id
        await m02.subscribe(topics.board_topic(GRID, "m01", "order"))
        await m02.subscribe(f"peergrid/{GRID}/b/+/order")

        async def listen() -> None:
            async for m in m02.messages():
                seen.append(m.topic)

        listener = asyncio.create_task(listen())
        # on m01's topics: the ACL drops them (MQTT 3.1.1 has no way to tell the sender)
        for leaf in ("reading", "status", "enrol", "ack"):
            t = topics.board_topic(GRID, "m01", leaf)
            await m02.publish(t, raw_frame(forged, t_m01, m02_key) if leaf == "reading" else b"x")
        # on its own topic, in m01's name: the broker lets it through, the coordinator refuses it
        await m02.publish(t_m02, raw_frame(forged, t_m02, m02_key))
        t_enrol = topics.board_topic(GRID, "m02", "enrol")
        enrol = messages.Enrol(board="m01", pubkey=m02_key.public, board_type="x", fw="0", ts=now)
        await m02.publish(t_enrol, raw_frame(enrol, t_enrol, m02_key))
        # an order for m01 (the coordinator's to send) must not reach m02
        async with Connection(broker.coordinator, "test-orders") as coord:
            await coord.publish(topics.board_topic(GRID, "m01", "order"), b"order for m01 only")
        await asyncio.sleep(1.0)
        listener.cancel()
    return {"seen": seen, "forged_on_m01_topic": raw_frame(forged, t_m01, m02_key)}


def test_empty_bundle_dir_to_enrolled_board_through_tls_and_acls(
    tmp_path: Path, secure_broker: SecureBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    site = site_toml(tmp_path, secure_broker)
    broker_dir = str(secure_broker.site.directory)
    assert main(["members", "add", "--config", str(site), "--id", "alice", "--name", "Alice"]) == 0
    out = tmp_path / "bundle"
    out.mkdir()  # empty
    argv = ["board", "bundle", "--board", str(HERE / "board.toml"), "--id", "m01", "--config", str(site)]
    argv += ["--broker-dir", broker_dir, "--out", str(out), "--arch", "x64"]
    assert main(argv) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["broker"]["tls"] is True and settings["broker"]["user"] == "m01"
    assert not (out / "key.bin").exists()  # the private key is made on the board, never here

    board_dir = tmp_path / "board"
    capsys.readouterr()
    assert main(["board", "flash", "--bundle", str(out), "--port", f"unix:{board_dir}"]) == 0
    printed = capsys.readouterr().out
    pubkey = crypto.SigningKey((board_dir / "key.bin").read_bytes()).public
    assert f"public key {pubkey.hex()} (generated on first boot)" in printed
    enroll = printed.split("next: ")[1].strip().replace("SITE.toml", str(site)).replace("MEMBER", "alice")
    assert main(enroll.split()[1:]) == 0  # the command the flash step printed

    cfg = config.load(site)
    lib = tmp_path / "lib"
    shutil.copytree(FAKES, lib / "fakes")
    m02_key = crypto.SigningKey(bytes(range(1, 33)))

    async def scenario() -> tuple[list[int], dict[str, object], IngestService]:
        stop = asyncio.Event()
        with Ledger.open(cfg.ledger) as ledger:
            svc = IngestService(ledger, GRID, cfg.broker, batch=cfg.batch, flush_s=cfg.flush_ms / 1000)
            task = asyncio.create_task(svc.run(stop))
            await asyncio.sleep(0.5)  # subscribed
            board = asyncio.create_task(asyncio.to_thread(run_board, board_dir, lib))
            attack = await impersonate(secure_broker, m02_key, int(time.time()))
            res = await board
            for _ in range(50):  # let ingest store what the broker acknowledged
                if svc.stored >= res[0]:
                    break
                await asyncio.sleep(0.1)
            stop.set()
            await task
            return res, attack, svc

    (sent, spooled, seq, errors), attack, svc = asyncio.run(scenario())
    assert sent >= 2 and spooled == 0 and errors == 0
    assert svc.stored == sent  # every reading the board sent through TLS was verified and stored
    assert svc.ingest.accepted["Enrol"] >= 1 and svc.ingest.accepted["Status"] >= 1

    # the broker: m02 saw no order of m01's, and nothing it published on m01's topics arrived
    assert attack["seen"] == []
    assert "bad_signature" not in svc.ingest.rejected and "duplicate" not in svc.ingest.rejected
    # the coordinator: m02's frames in m01's name on its own topics were refused
    assert svc.ingest.rejected == {"wrong_topic": 2}, svc.ingest.rejected
    # and had the broker let the forged frame through on m01's topic, the signature would fail
    check = svc.ingest.check
    with pytest.raises(Exception, match="signature"):
        check(topics.board_topic(GRID, "m01", "reading"), attack["forged_on_m01_topic"])  # type: ignore[arg-type]

    with Ledger.open(cfg.ledger) as ledger:
        assert [b.board_id for b in ledger.boards("active")] == ["m01"]
        assert ledger.count_readings() == sent
    capsys.readouterr()
    assert main(["ledger", "verify", "--config", str(site)]) == 0
    assert f"{sent} readings" in capsys.readouterr().out
    assert seq == sent
    # the broker's own account: m02's four publishes on m01's topics denied, and m02 ran under
    # its own client id although it asked for m01's (no session takeover)
    log = secure_broker.log.read_text()
    assert log.count("Denied PUBLISH from m02") == 4
    assert "u'm02')" in log and " as m02 (" in log
    # an anonymous client and a wrong password are refused outright
    anonymous = dataclasses.replace(secure_broker.board("m01"), username=None, password=None)
    for addr in (anonymous, secure_broker.board("m01", password="wrong")):
        with pytest.raises(MqttError):
            asyncio.run(_connect(addr))


async def _connect(addr: object) -> None:
    async with Connection(addr, "probe"):  # type: ignore[arg-type]
        pass
