"""The generated Mosquitto configuration, enforced by a real Mosquitto: who may publish and read
what, TLS against the site's CA, password hashes Mosquitto accepts, revocation on reload."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from coordinator import config
from coordinator.errors import MqttError
from coordinator.provision import pki
from coordinator.provision.brokerconf import check_password, hash_password
from coordinator.provision.errors import ProvisionError
from coordinator.service.mqtt import BrokerAddress, Connection
from protocol import topics
from tests.provision.conftest import GRID, SecureBroker, init_site

G = f"peergrid/{GRID}"


async def received(
    broker: SecureBroker, who: BrokerAddress, subs: list[str], sends: list[tuple[BrokerAddress, str]]
) -> list[str]:
    """Topics ``who`` receives on ``subs`` while each (client, topic) of ``sends`` publishes."""
    got: list[str] = []
    async with Connection(who, f"listen-{who.username}") as c:
        for s in subs:
            await c.subscribe(s)

        async def listen() -> None:
            async for m in c.messages():
                got.append(m.topic)

        task = asyncio.create_task(listen())
        for sender, topic in sends:
            async with Connection(sender, f"send-{sender.username}") as s:
                await s.publish(topic, b"x")
        await asyncio.sleep(0.5)
        task.cancel()
    return sorted(got)


def test_acls_pin_each_board_to_its_own_topics(secure_broker: SecureBroker) -> None:
    b = secure_broker
    m01, m02, coord = b.board("m01"), b.board("m02"), b.coordinator
    ups = [f"{G}/b/m01/{leaf}" for leaf in ("reading", "ack", "status", "enrol")]
    # the coordinator reads every board's upward topics; m02's attempts on m01's topics vanish
    got = asyncio.run(
        received(
            b,
            coord,
            [topics.board_filter(GRID, leaf) for leaf in ("reading", "ack", "status", "enrol")],
            [(m01, t) for t in ups] + [(m02, t) for t in ups] + [(m02, f"{G}/b/m02/reading")],
        )
    )
    assert got == sorted([*ups, f"{G}/b/m02/reading"])
    # orders: the coordinator's to write, each board reads only its own
    orders = [
        (coord, f"{G}/b/m01/order"),
        (coord, f"{G}/b/m02/order"),
        (m02, f"{G}/b/m01/order"),
        (m01, f"{G}/b/m01/order"),
    ]
    assert asyncio.run(received(b, m01, [f"{G}/b/m01/order", f"{G}/b/+/order"], orders)) == [
        f"{G}/b/m01/order"
    ]
    assert asyncio.run(received(b, m02, [f"{G}/b/+/order", f"{G}/#"], orders)) == [f"{G}/b/m02/order"]
    # a board can read no other board's readings, nor write market results
    sends = [(m01, f"{G}/b/m01/reading"), (m02, f"{G}/market/result"), (coord, f"{G}/market/result")]
    assert asyncio.run(received(b, m02, [f"{G}/#"], sends)) == []
    assert asyncio.run(received(b, coord, [f"{G}/market/result"], sends)) == [f"{G}/market/result"]


def test_home_assistant_reads_only_its_members_boards_and_packets_are_bounded(
    secure_broker: SecureBroker,
) -> None:
    """A member's Home Assistant user (``broker add-hass``) reads the discovery configs and states of
    its own boards only; only the coordinator writes them; a packet over the broker's limit is
    dropped with its sender's connection."""
    from coordinator.hass import discovery, state_topic
    from coordinator.provision.brokerconf import MAX_PACKET

    b = secure_broker
    user, _ = b.site.add_hass("alice", ["m01"])
    b.reload()
    alice_ha, m01, coord = b.board(user), b.board("m01"), b.coordinator
    disc = {board: [t for t, _ in discovery(GRID, board, None, "virtual")] for board in ("m01", "m02")}
    sends = [(coord, t) for t in disc["m01"] + disc["m02"]]
    sends += [(coord, state_topic(GRID, "m01")), (coord, state_topic(GRID, "m02"))]
    # neither a board nor Home Assistant itself may write them
    sends += [(m01, disc["m01"][0]), (alice_ha, state_topic(GRID, "m01"))]
    got = asyncio.run(received(b, alice_ha, ["homeassistant/#", f"{G}/#"], sends))
    assert got == sorted([*disc["m01"], state_topic(GRID, "m01")])
    assert asyncio.run(received(b, alice_ha, [f"{G}/b/+/reading"], [(m01, f"{G}/b/m01/reading")])) == []

    async def oversized() -> list[str]:
        got: list[str] = []
        async with Connection(coord, "listen-big") as c:
            await c.subscribe(f"{G}/b/+/reading")

            async def listen() -> None:
                async for m in c.messages():
                    got.append(f"{m.topic} {len(m.payload)}")

            task = asyncio.create_task(listen())
            try:
                async with Connection(m01, "send-big") as s:
                    await s.publish(f"{G}/b/m01/reading", bytes(MAX_PACKET))
                    await s.publish(f"{G}/b/m01/reading", b"small")
            except MqttError:
                pass  # the broker drops the sender on the oversized packet
            async with Connection(m01, "send-after") as s:
                await s.publish(f"{G}/b/m01/reading", b"after")
            await asyncio.sleep(0.5)
            task.cancel()
        return got

    assert asyncio.run(oversized()) == [f"{G}/b/m01/reading 5"]


def test_tls_needs_the_site_ca_and_revocation_takes_effect_on_reload(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    b = secure_broker

    async def connect(addr: BrokerAddress) -> None:
        async with Connection(addr, "probe"):
            pass

    asyncio.run(connect(b.board("m02")))
    stranger = pki.create(tmp_path / "other-ca", "other", ["127.0.0.1"])  # a CA the site never used
    with pytest.raises(MqttError):
        asyncio.run(connect(b.board("m02", ca=stranger.ca_cert)))
    # plain MQTT on the TLS port: the broker closes the connection instead of answering
    with socket.create_connection(("127.0.0.1", b.site.settings.port), timeout=3) as sock:
        sock.sendall(bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 30, 0, 0]))
        try:
            assert sock.recv(4) == b""
        except ConnectionResetError:
            pass
    wrong_name = ssl.create_default_context(cafile=str(b.site.pki.ca_cert))  # certificate names checked
    with pytest.raises(MqttError):
        asyncio.run(connect(dataclasses.replace(b.board("m02"), host="127.0.0.2", tls=wrong_name)))
    old = b.board("m02")
    assert b.site.revoke("m02") and not b.site.revoke("m02")
    b.reload()
    with pytest.raises(MqttError):
        asyncio.run(connect(old))


def test_board_credentials_work_on_the_board_listener_only_and_client_ids_are_bound(
    secure_broker: SecureBroker,
) -> None:
    """A board's user name and password are refused on the coordinator's loopback listener (where a
    local process could otherwise take the ingest's client id), and a board on the TLS listener
    that asks for the coordinator's client id gets its own user name instead: the coordinator's
    session stays up."""
    b = secure_broker
    s = b.site.settings
    m01 = b.board("m01")
    board_on_loopback = BrokerAddress("127.0.0.1", s.local_port, "m01", b.site.password("m01"))
    ingest_id = f"peergrid-{GRID}"

    async def connect(addr: BrokerAddress, client_id: str) -> None:
        async with Connection(addr, client_id):
            pass

    with pytest.raises(MqttError):
        asyncio.run(connect(board_on_loopback, "probe"))

    async def takeover() -> list[str]:
        got: list[str] = []
        async with Connection(b.coordinator, ingest_id) as ingest:
            await ingest.subscribe(topics.board_filter(GRID, "reading"))

            async def listen() -> None:
                async for m in ingest.messages():
                    got.append(m.topic)

            task = asyncio.create_task(listen())
            for _ in range(3):  # a board asks for the ingest's client id, again and again
                async with Connection(m01, ingest_id) as board:
                    await board.publish(f"{G}/b/m01/reading", b"x")
            await asyncio.sleep(0.5)
            task.cancel()
        return got

    # the ingest session was never knocked off: it received all three readings on one session
    assert asyncio.run(takeover()) == [f"{G}/b/m01/reading"] * 3
    assert "New client connected from" in b.log.read_text() and " as m01 " in b.log.read_text()


def test_the_sample_config_is_what_broker_init_writes(tmp_path: Path) -> None:
    """deploy/mosquitto-peergrid.conf is generated by the same code as ``broker init``."""
    from coordinator.provision.brokerconf import SAMPLE, SAMPLE_DIR, Site, sample_conf

    sample = (Path(__file__).resolve().parents[2] / "deploy" / "mosquitto-peergrid.conf").read_text()
    assert sample == sample_conf()
    site = Site.init(tmp_path / "b", dataclasses.replace(SAMPLE))
    generated = site.mosquitto_conf().replace(str(tmp_path / "b"), str(SAMPLE_DIR))
    assert sample.endswith(generated)
    for line in ("max_packet_size 4096", "max_queued_bytes", "per_listener_settings true"):
        assert line in sample


def test_password_hashes_and_generated_files(tmp_path: Path) -> None:
    h = hash_password("s3cret", salt=bytes(12))
    assert h.startswith("$7$101$AAAAAAAAAAAAAAAA$") and check_password("s3cret", h)
    assert not check_password("other", h) and not check_password("s3cret", "$6$x$y$z")
    exe = shutil.which("mosquitto_passwd") or (
        "/usr/bin/mosquitto_passwd" if Path("/usr/bin/mosquitto_passwd").exists() else None
    )
    if exe:  # the same format as Mosquitto's own tool: our checker accepts its hash
        pw = tmp_path / "pw"
        subprocess.run([exe, "-c", "-b", str(pw), "u", "their-secret"], check=True, capture_output=True)
        assert check_password("their-secret", pw.read_text().strip().split(":", 1)[1])
    site = init_site(tmp_path, ("m01",))
    conf = (site.directory / "mosquitto.conf").read_text()
    assert "max_inflight_messages 1000\n" in conf and "max_queued_messages 100000\n" in conf
    assert "use_username_as_clientid true" in conf and "allow_anonymous false" in conf
    users = [line.split(":")[0] for line in (site.directory / "passwd").read_text().splitlines()]
    assert users == ["coordinator", "m01"]  # the TLS listener: boards, Home Assistant, coordinator
    local = [line.split(":")[0] for line in (site.directory / "passwd.local").read_text().splitlines()]
    assert local == ["coordinator"]  # the loopback listener: the coordinator only
    assert (site.directory / "secrets" / "m01.password").stat().st_mode & 0o077 == 0
    assert (site.directory / "ca.key").stat().st_mode & 0o077 == 0
    with pytest.raises(ProvisionError, match="reserved"):
        site.add_board("coordinator")
    with pytest.raises(ProvisionError, match="not a broker directory"):
        from coordinator.provision.brokerconf import Site

        Site(tmp_path / "nowhere")


def test_coordinator_config_tls_and_password_file(tmp_path: Path, secure_broker: SecureBroker) -> None:
    d = secure_broker.site.directory
    p = tmp_path / "tls.toml"
    p.write_text(
        '[coordinator]\ngrid = "g1"\nledger = "l.db"\n'
        f'[broker]\nport = {secure_broker.site.settings.port}\nusername = "coordinator"\n'
        f'password_file = "{d}/secrets/coordinator.password"\ntls = true\nca = "{d}/ca.crt"\n'
    )
    cfg = config.load(p)
    assert cfg.broker.tls is not None and cfg.broker.password == secure_broker.site.password("coordinator")

    async def connect() -> None:
        async with Connection(cfg.broker, "coord-tls"):
            pass

    asyncio.run(connect())  # TLS and a password file from the config work (one connection here)
    for body, msg in (
        ('[broker]\ntls = true\nca = "missing.crt"\n', "broker.ca: .*missing.crt does not exist"),
        ('[broker]\nca = "x.crt"\n', "broker.ca is set but broker.tls is not true"),
        ('[broker]\ntls = "yes"\n', "broker.tls must be a bool"),
        ('[broker]\npassword_file = "nope"\n', "broker.password_file: cannot read"),
    ):
        p.write_text('[coordinator]\ngrid = "g1"\nledger = "l.db"\n' + body)
        with pytest.raises(config.ConfigError, match=msg):
            config.load(p)


def test_regenerated_files_keep_the_group_and_mode_the_operator_gave_them(tmp_path: Path) -> None:
    import os

    site = init_site(tmp_path)
    passwd = site.directory / "passwd"
    assert passwd.stat().st_mode & 0o777 == 0o600
    os.chmod(passwd, 0o640)  # what the Raspberry Pi guide does (with chgrp mosquitto)
    site.add_board("m05")
    assert passwd.stat().st_mode & 0o777 == 0o640 and "m05:$7$" in passwd.read_text()


def test_cli_refusals_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from coordinator.cli import main

    site = init_site(tmp_path)
    d = str(site.directory)
    capsys.readouterr()
    assert main(["broker", "init", "--dir", d, "--grid", GRID, "--host", "x"]) == 2
    assert "already set up" in capsys.readouterr().err
    assert main(["broker", "revoke", "--dir", d, "--board", "m77"]) == 2
    assert "'m77' has no broker credentials" in capsys.readouterr().err
    cfg = tmp_path / "other.toml"
    cfg.write_text('[coordinator]\ngrid = "other"\nledger = "l.db"\n')
    argv = ["board", "bundle", "--board", "esp32-dsmr-p1", "--id", "m01", "--config", str(cfg)]
    assert main([*argv, "--broker-dir", d, "--out", str(tmp_path / "b")]) == 2
    assert "broker directory is for grid 'g1', config for 'other'" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "b")]) == 2
    assert "give --broker-dir" in capsys.readouterr().err


def test_retiring_a_board_revokes_its_broker_credentials_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With ``[broker] dir`` in the config, ``board retire`` (and ``replace``) revoke the old
    board's broker credentials without being asked; with no broker directory known, the command
    says loudly that they were not revoked."""
    from coordinator.cli import main

    site = init_site(tmp_path, ("m01", "m02"))
    led = tmp_path / "l.db"
    base = f'[coordinator]\ngrid = "{GRID}"\nledger = "{led}"\n'
    with_dir = tmp_path / "with.toml"
    with_dir.write_text(base + f'[broker]\ndir = "{site.directory}"\n')
    without = tmp_path / "without.toml"
    without.write_text(base)
    assert main(["members", "add", "--config", str(without), "--id", "alice", "--name", "Alice"]) == 0
    for b, k in (("m01", 9), ("m02", 8)):
        argv = ["board", "enroll", "--config", str(without), "--board", b, "--member", "alice"]
        assert main([*argv, "--pubkey", (bytes([k]) * 32).hex()]) == 0
    capsys.readouterr()
    assert main(["board", "retire", "--config", str(with_dir), "--board", "m01"]) == 0
    assert "broker credentials of m01 revoked" in capsys.readouterr().out
    assert "m01" not in site.users() and "m01:" not in (site.directory / "passwd").read_text()
    assert main(["board", "retire", "--config", str(without), "--board", "m02"]) == 0
    assert "broker credentials of m02 NOT revoked" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text(base + f'[broker]\ndir = "{tmp_path}"\n')
    with pytest.raises(config.ConfigError, match="is not a broker directory"):
        config.load(bad)
