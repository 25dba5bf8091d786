"""``peergrid coordinator run`` with ``[ocpp]``: the composition root starts the central system over
TLS (security profile 2, the certificate and key paths relative to the config); a charger bound in
the config with a ``password_file`` (the ``ocpp`` package's ChargePoint client, with its password)
connects and gets its member's EV current from the board order of the running interval as a
charging profile; an unknown charger is refused, and so is one bound in the config's plain form
(no password: logged with how to set one); SIGTERM ends it all."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from coordinator.ledger import Ledger
from coordinator.ledger.queries import chargers as q
from coordinator.members import MemberPrefs
from protocol import crypto, frame, messages, topics
from tests.broker import Mosquitto
from tests.chargers.chargepoint import PASSWORD, open16
from tests.chargers.test_auth import make_tls
from tests.chargers.test_ocpp import EV

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_coordinator_run_serves_ocpp_and_sends_the_orders_ev_current(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    db, keyf = tmp_path / "l.db", tmp_path / "coordinator.key"
    seed = bytes(range(32))
    keyf.write_bytes(seed)
    key = crypto.SigningKey(seed)
    now = int(time.time())
    start = now - now % 900
    with Ledger.open(db) as led:
        led.add_member("alice", "Alice", "ev", now=now - 86_400, prefs=MemberPrefs.parse("alice", EV))
        led.add_board("b-alice", "virtual", bytes(32), now=now - 86_400, member_id="alice", status="active")
        for iv in (start, start + 900):  # what the dispatch of the running interval (and the next) stored
            o = messages.Order(
                board="b-alice",
                oseq=led.next_oseq("b-alice"),
                interval=iv,
                valid_from=iv,
                valid_until=iv + 900,
                ev_ma=7_500,
                relay_mask=0,
                relay_state=0,
            )
            led.add_board_order(
                "b-alice", o.oseq, iv, frame.seal(o, topics.board_topic("g1", "b-alice", "order"), key)
            )
    port = free_port()
    ca, _, _ = make_tls(tmp_path)
    (tmp_path / "cp1.password").write_text(PASSWORD + "\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[coordinator]\ngrid = "g1"\nledger = "{db}"\nkey = "{keyf}"\n[broker]\nport = {mosquitto.port}\n'
        f'[ocpp]\nlisten = "127.0.0.1:{port}"\ntls_cert = "cert.pem"\ntls_key = "key.pem"\n'
        '[ocpp.chargers]\nCP1 = { member = "alice", password_file = "cp1.password" }\nCP2 = "alice"\n'
    )
    tls = ssl.create_default_context(cafile=str(ca))
    proc = subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "coordinator", "run", "--config", str(cfg)],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    async def charger() -> float:
        for _ in range(100):  # until the central system listens
            try:
                cp, ws, task = await open16(port, "CP1", PASSWORD, tls=tls)
                break
            except (OSError, InvalidStatus):
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the central system did not come up")
        with pytest.raises(InvalidStatus) as e:
            await open16(port, "CP-unknown", tls=tls)
        assert e.value.response.status_code == 404
        with pytest.raises(InvalidStatus) as e:
            await open16(port, "CP2", "a-password-it-does-not-have", tls=tls)
        assert e.value.response.status_code == 401
        await asyncio.wait_for(cp.box.got.wait(), 30)
        with Ledger.open(db) as led:  # until the coordinator has the charger's answer
            for _ in range(300):
                if q.profiles(led, "CP1"):
                    break
                await asyncio.sleep(0.1)
        await ws.close()
        task.cancel()
        return cp.box.limit_a()

    try:
        assert proc.stdout is not None and "peergrid coordinator" in proc.stdout.readline()
        assert asyncio.run(charger()) == 7.5
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    with Ledger.open(db) as led:
        assert led.rejections()["ocpp_unknown_charger"] == 1
        assert led.rejections()["ocpp_no_password"] == 1
        assert "ocpp.chargers.CP2 has no password" in err and "peergrid charger password CP2" in err
        assert PASSWORD not in err and "on wss://127.0.0.1" in err
        c = q.charger(led, "CP1")
        assert c is not None and c.member_id == "alice" and c.protocol == "ocpp1.6"
        assert q.profiles(led, "CP1")[0][1:] == (7_500, "TxDefaultProfile", "Accepted")
