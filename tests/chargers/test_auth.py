"""Chargers authenticate (OCPP security profiles 1 and 2): HTTP Basic on the WebSocket upgrade with
the charger id as user and the password bound to it, the ``ocpp`` package's ChargePoint client as
the wallbox; over TLS with a certificate made here. Refusals are 401, counted, logged at a bounded
rate and never with the password; only an authenticated connection replaces an older one."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import logging
import re
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ocpp.v16 import call as call16
from websockets.exceptions import InvalidStatus

from coordinator.chargers import ChargerError
from coordinator.chargers.auth import (
    BadCredentials,
    hash_password,
    new_password,
    parse_basic,
    read_password_file,
    verify_password,
)
from coordinator.chargers.service import OcppService, bind, set_password
from coordinator.chargers.settings import parse
from coordinator.cli import main
from coordinator.ledger import Ledger
from coordinator.ledger.queries import chargers as q
from tests.chargers.chargepoint import PASSWORD, basic, open16, open201
from tests.chargers.test_ocpp import GRID, KEY, T0, Clock, community, service, started

REALM = 'Basic realm="peergrid"'


async def refused(port: int, cid: str, **kw: object) -> int:
    """The HTTP status a connection attempt was refused with (it must be refused); 401s carry the
    Basic challenge."""
    with pytest.raises(InvalidStatus) as e:
        await open16(port, cid, **kw)  # type: ignore[arg-type]
    r = e.value.response
    if r.status_code == 401:
        assert r.headers["WWW-Authenticate"] == REALM
    return r.status_code


def ocpp_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "peergrid.ocpp"]


# -- the pieces ----------------------------------------------------------------------------------


def test_passwords_are_stored_salted_and_checked() -> None:
    pw = new_password()
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", pw)  # within OCPP 1.6's 16..40, characters 2.0.1 allows
    h1, h2 = hash_password(pw), hash_password(pw)
    assert h1 != h2 and pw not in h1  # salted, never the clear password
    assert verify_password(pw, h1) and verify_password(pw, h2)
    assert not verify_password(pw + "x", h1) and not verify_password(pw, "not-a-hash")
    assert not verify_password(pw, "scrypt$16384$8$1$!!$!!")


def test_a_malformed_authorization_header_is_a_bad_credentials_error_never_another() -> None:
    assert parse_basic([basic("CP1", "a:b:c")]) == ("CP1", "a:b:c")  # the password may hold colons
    for values, what in (
        ([], "no credentials"),
        (["Basic !!!not base64!!!"], "not base64"),
        (["Basic " + base64.b64encode(b"no colon here").decode()], "without a colon"),
        (["Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()], "not base64 of UTF-8"),
        (["Basic " + "QUFB" * 1000], "4006 characters"),
        (["Bearer abc"], "not Basic"),
        (["Basic"], "without a colon"),  # empty credentials
        ([basic("a", "b"), basic("a", "b")], "2 Authorization headers"),
    ):
        with pytest.raises(BadCredentials, match=what):
            parse_basic(values)


def test_password_files_and_settings_are_checked_with_clear_errors(tmp_path: Path) -> None:
    good, short, spaced = tmp_path / "good", tmp_path / "short", tmp_path / "spaced"
    good.write_text(PASSWORD + "\n")
    short.write_text("tooshort\n")
    spaced.write_text("a password with spaces in it\n")
    assert read_password_file(good) == PASSWORD
    with pytest.raises(ChargerError, match="16..40 characters, got 8"):
        read_password_file(short)
    with pytest.raises(ChargerError, match="printable ASCII without spaces"):
        read_password_file(spaced)
    with pytest.raises(ChargerError, match="password file .*missing"):
        read_password_file(tmp_path / "missing")
    s = parse(
        {"listen": "h:1", "chargers": {"CP1": {"member": "alice", "password_file": "good"}, "CP2": "bob"}},
        tmp_path,
    )
    assert s is not None and s.bindings == {"CP1": "alice", "CP2": "bob"}
    assert s.passwords == {"CP1": PASSWORD} and PASSWORD not in repr(s)
    assert s.scheme == "ws" and s.ssl_context() is None
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    for bad, where in (
        ({"CP1": {"member": "alice", "password_file": "short"}}, "password file .*short: a charger password"),
        ({"CP1": {"member": "alice", "password_file": "nope"}}, r"ocpp.chargers.CP1.password_file: .*nope"),
        ({"CP1": {"password_file": "good"}}, r"ocpp.chargers.CP1.member must be a member id"),
        ({"CP1": {"member": "alice", "pasword_file": "good"}}, r"ocpp.chargers.CP1: unknown key"),
        ({"CP1": 7}, r"ocpp.chargers.CP1 must be a member id or"),
    ):
        with pytest.raises(ChargerError, match=where):
            parse({"listen": "h:1", "chargers": bad}, tmp_path)
    for tls, where in (
        ({"tls_cert": "garbage.pem"}, "go together"),
        ({"tls_cert": "missing.pem", "tls_key": "good"}, r"ocpp.tls_cert: .*missing.pem does not exist"),
        ({"tls_cert": "garbage.pem", "tls_key": "good"}, "do not load as a PEM certificate chain"),
    ):
        with pytest.raises(ChargerError, match=where):
            parse({"listen": "h:1", **tls}, tmp_path)


# -- the central system --------------------------------------------------------------------------


def test_the_right_password_is_accepted_and_every_bad_credential_refused_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    led = community(tmp_path)
    bind(led, "CP1", "alice", T0, PASSWORD)
    bind(led, "CP2", "alice", T0, "another-password-of-cp2")
    wrong = "wrong-password-0123456789"
    caplog.set_level(logging.INFO, "peergrid.ocpp")

    async def main() -> list[int]:
        svc = service(led, Clock(T0 + 5))
        await started(svc)
        port = svc.central.port
        try:
            statuses = [
                await refused(port, "CP1", password=wrong),
                await refused(port, "CP1", password=None),  # no Authorization header
                await refused(port, "CP1", authorization=basic("CP2", "another-password-of-cp2")),  # CP2's
                await refused(port, "CP1", authorization="Basic %%%"),  # not base64
                await refused(port, "CP1", authorization="Basic " + base64.b64encode(b"CP1").decode()),
                await refused(port, "CP1", authorization="Basic " + "QUFB" * 500),  # oversized
                await refused(port, "CP1", authorization="Digest username=CP1"),
            ]
            assert svc.central.links == {}
            cp, ws, task = await open16(port, "CP1", PASSWORD)
            r = await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            assert r.status == "Accepted" and "CP1" in svc.central.links
            await cp.call(call16.Heartbeat())
            await ws.close()
            task.cancel()
            cp2, ws2, task2 = await open201(port, "CP2", "another-password-of-cp2")  # OCPP 2.0.1 too
            await ws2.close()
            task2.cancel()
            bind(led, "CP:7", "alice", T0, PASSWORD)  # an id with a colon (user:password is ambiguous)
            cp3, ws3, task3 = await open16(port, "CP:7", PASSWORD)
            await ws3.close()
            task3.cancel()
            return statuses
        finally:
            await svc.central.close()

    assert asyncio.run(main()) == [401] * 7
    assert led.rejections()["ocpp_bad_password"] == 7
    c = q.charger(led, "CP1")
    assert c is not None and c.protocol == "ocpp1.6" and c.vendor == "V"
    c2 = q.charger(led, "CP2")
    assert c2 is not None and c2.protocol == "ocpp2.0.1"
    logged = "\n".join(ocpp_lines(caplog))
    assert "charger CP1 refused (ocpp_bad_password): wrong password" in logged
    for secret in (wrong, PASSWORD, "another-password-of-cp2"):
        assert secret not in logged


def test_a_wrong_password_does_not_kick_off_the_connected_charger_a_right_one_does(tmp_path: Path) -> None:
    led = community(tmp_path)
    bind(led, "CP1", "alice", T0, PASSWORD)

    async def main() -> None:
        svc = service(led, Clock(T0 + 5))
        await started(svc)
        port = svc.central.port
        try:
            cp, ws, task = await open16(port, "CP1")
            first = svc.central.links["CP1"]
            assert await refused(port, "CP1", password="an-impostor-password-123") == 401
            assert await refused(port, "CP1", password=None) == 401
            assert svc.central.links["CP1"] is first  # still the charger's link
            await cp.call(call16.Heartbeat())  # and it still works
            assert ws.close_code is None
            cp2, ws2, task2 = await open16(port, "CP1")  # the charger itself, reconnecting
            await ws.wait_closed()
            assert ws.close_code == 1000 and ws.close_reason == "replaced"
            assert svc.central.links["CP1"] is not first
            await cp2.call(call16.Heartbeat())
            await ws2.close()
            task.cancel()
            task2.cancel()
        finally:
            await svc.central.close()

    asyncio.run(main())
    assert led.rejections()["ocpp_bad_password"] == 2


def test_a_flood_of_bad_attempts_writes_a_bounded_number_of_log_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    led = community(tmp_path)
    bind(led, "CP1", "alice", T0, PASSWORD)
    caplog.set_level(logging.WARNING, "peergrid.ocpp")
    now = [1000.0]

    async def main() -> None:
        svc = service(led, Clock(T0 + 5))
        svc.central.refusals.clock = lambda: now[0]
        await started(svc)
        port = svc.central.port
        try:
            for batch in range(10):  # 200 attempts, 20 at a time, of three kinds
                kinds: list[dict[str, object]] = [
                    {"password": f"guess-{batch:02d}-{i:02d}-0123456789"} for i in range(18)
                ]
                kinds += [{"password": None}, {"authorization": "Basic ###"}]
                got = await asyncio.gather(*(refused(port, "CP1", **k) for k in kinds))
                assert got == [401] * 20
            # the charger still gets in: a flood locks nobody out
            cp, ws, task = await open16(port, "CP1")
            await ws.close()
            task.cancel()
            during = list(ocpp_lines(caplog))
            assert [line for line in during if "refused" in line] == [
                next(line for line in during if "refused" in line)
            ]  # one line for the whole flood so far
            now[0] += 61  # the window ends: one summary line
            assert svc.central.refusals.roll() == 1
            await refused(port, "CP1", password="one-more-guess-0123456789")  # a new window: in full
        finally:
            await svc.central.close()

    asyncio.run(main())
    assert led.rejections()["ocpp_bad_password"] == 201
    lines = [line for line in ocpp_lines(caplog) if "refused" in line]
    assert len(lines) == 3, lines
    assert lines[0].startswith("charger CP1 refused (ocpp_bad_password): ")
    assert lines[1] == "charger CP1 refused (ocpp_bad_password) 199 more times in the last 61 s"
    assert lines[2] == "charger CP1 refused (ocpp_bad_password): wrong password"


def test_rotation_refuses_the_old_password_and_accepts_the_new(tmp_path: Path) -> None:
    led = community(tmp_path)
    bind(led, "CP1", "alice", T0, PASSWORD)
    new = "the-new-password-9876543210"

    async def main() -> None:
        svc = service(led, Clock(T0 + 5))
        await started(svc)
        port = svc.central.port
        try:
            cp, ws, task = await open16(port, "CP1", PASSWORD)
            await ws.close()
            task.cancel()
            set_password(led, "CP1", new, T0 + 10)
            assert await refused(port, "CP1", password=PASSWORD) == 401
            cp, ws, task = await open16(port, "CP1", new)
            await cp.call(call16.Heartbeat())
            await ws.close()
            task.cancel()
        finally:
            await svc.central.close()

    asyncio.run(main())
    c = q.charger(led, "CP1")
    assert c is not None and c.password_set == T0 + 10
    assert led.rejections()["ocpp_bad_password"] == 1
    with pytest.raises(ChargerError, match="not bound"):
        set_password(led, "CP9", new, T0)
    with pytest.raises(ChargerError, match="16..40"):
        set_password(led, "CP1", "short", T0)


def test_a_connected_charger_is_dropped_when_its_password_changes_or_it_is_unbound(tmp_path: Path) -> None:
    """``peergrid charger password`` / ``unbind`` run in another process: the service's binding
    check closes the connection opened with the old credentials, and only the new ones get in."""
    led = community(tmp_path)
    for cid in ("CP1", "CP2", "CP3"):
        bind(led, cid, "alice", T0, PASSWORD)
    new = "the-new-password-9876543210"

    async def main() -> None:
        svc = service(led, Clock(T0 + 5))
        await started(svc)
        port = svc.central.port
        try:
            opened = {cid: await open16(port, cid) for cid in ("CP1", "CP2", "CP3")}
            for cp, _, _ in opened.values():
                await cp.call(call16.Heartbeat())
            await svc.check_bindings()  # nothing changed: all stay
            assert sorted(svc.central.links) == ["CP1", "CP2", "CP3"]
            set_password(led, "CP1", new, T0)  # in the same second as its binding: still seen
            assert q.unbind(led, "CP2")
            await svc.check_bindings()
            for cid, why in (("CP1", "password changed"), ("CP2", "unbound")):
                ws = opened[cid][1]
                await asyncio.wait_for(ws.wait_closed(), 10)
                assert (ws.close_code, ws.close_reason) == (1008, why)
            assert opened["CP3"][1].close_code is None and "CP3" in svc.central.links
            assert await refused(port, "CP1", password=PASSWORD) == 401
            cp, ws, task = await open16(port, "CP1", new)
            await cp.call(call16.Heartbeat())
            await ws.close()
            task.cancel()
            for _, w, t in opened.values():
                await w.close()
                t.cancel()
        finally:
            await svc.central.close()

    asyncio.run(main())


def test_a_charger_without_a_password_is_refused_with_how_to_set_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A charger bound before passwords existed (or in the config's plain form) has none: refused
    whatever it sends, logged with how to set one; a password_file in the config sets it at start,
    and again only when the file changes."""
    led = community(tmp_path)
    bind(led, "CP0", "alice", T0)  # no password: as the migration leaves a charger bound before it
    pwf = tmp_path / "cp1.password"
    pwf.write_text(PASSWORD)
    caplog.set_level(logging.INFO, "peergrid.ocpp")

    def configured() -> OcppService:
        s = parse(
            {
                "listen": "127.0.0.1:0",
                "chargers": {"CP1": {"member": "alice", "password_file": str(pwf)}, "CP2": "alice"},
            }
        )
        assert s is not None
        return OcppService(led, s, GRID, 900, KEY.public, now=Clock(T0 + 5))

    async def main() -> None:
        svc = configured()
        await started(svc)
        port = svc.central.port
        try:
            assert await refused(port, "CP0", password="any-password-at-all-0000") == 401
            assert await refused(port, "CP2", password=None) == 401
            cp, ws, task = await open16(port, "CP1", PASSWORD)  # from its password_file
            await ws.close()
            task.cancel()
        finally:
            await svc.central.close()

    asyncio.run(main())
    assert led.rejections()["ocpp_no_password"] == 2
    logged = "\n".join(ocpp_lines(caplog))
    assert "ocpp.chargers.CP2 has no password: the charger is refused until one is set" in logged
    assert (
        "charger CP0 refused (ocpp_no_password): it has no password; set one with `peergrid charger" in logged
    )
    assert "peergrid charger password CP2" in logged
    set_at = q.charger(led, "CP1").password_set  # type: ignore[union-attr]
    configured().bind_configured()  # a restart with the same file: unchanged
    assert q.charger(led, "CP1").password_set == set_at  # type: ignore[union-attr]
    pwf.write_text("a-rotated-password-in-the-file")
    svc = configured()
    svc.now = Clock(T0 + 99)
    svc.bind_configured()
    assert q.charger(led, "CP1").password_set == T0 + 99  # type: ignore[union-attr]
    assert verify_password("a-rotated-password-in-the-file", q.password_hash(led, "CP1") or "")


# -- TLS (security profile 2) --------------------------------------------------------------------


def make_tls(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for localhost / 127.0.0.1 signed by it: (CA, chain, key)."""
    now = datetime.datetime.now(datetime.UTC)

    def cert(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: str,
        signer: ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
            )
        )
        if ca:
            b = b.add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
            )
        else:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert("peergrid test CA", ca_key, "peergrid test CA", ca_key, True)
    leaf = cert("localhost", key, "peergrid test CA", ca_key, False)
    pem = serialization.Encoding.PEM
    ca_f, chain_f, key_f = d / "ca.pem", d / "cert.pem", d / "key.pem"
    ca_f.write_bytes(ca.public_bytes(pem))
    chain_f.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    key_f.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ca_f, chain_f, key_f


def test_tls_security_profile_2(tmp_path: Path) -> None:
    led = community(tmp_path)
    bind(led, "CP1", "alice", T0, PASSWORD)
    ca, chain, key = make_tls(tmp_path)
    s = parse({"listen": "127.0.0.1:0", "tls_cert": "cert.pem", "tls_key": "key.pem"}, tmp_path)
    assert s is not None and s.scheme == "wss" and s.tls_cert == chain

    async def main() -> None:
        svc = OcppService(led, s, GRID, 900, KEY.public, now=Clock(T0 + 5))
        await started(svc)
        port = svc.central.port
        trusted = ssl.create_default_context(cafile=str(ca))
        try:
            cp, ws, task = await open16(port, "CP1", PASSWORD, tls=trusted)
            assert ws.transport.get_extra_info("ssl_object") is not None
            r = await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            assert r.status == "Accepted"
            await ws.close()
            task.cancel()
            assert await refused(port, "CP1", password="wrong-password-over-tls-1", tls=trusted) == 401
            with pytest.raises(ssl.SSLCertVerificationError):  # a client that does not trust the CA
                await open16(port, "CP1", PASSWORD, tls=ssl.create_default_context())
        finally:
            await svc.central.close()

    asyncio.run(main())
    assert led.rejections()["ocpp_bad_password"] == 1


# -- the CLI -------------------------------------------------------------------------------------


def test_cli_binds_with_a_printed_password_rotates_it_and_lists_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[coordinator]\ngrid = "g1"\nledger = "l.db"\n[ocpp]\nlisten = "0.0.0.0:9000"\n')
    community(tmp_path).close()
    c = ["--config", str(cfg)]
    assert main(["charger", "bind", "CP1", "alice", *c]) == 0
    out = capsys.readouterr().out
    m = re.search(r"password +([A-Za-z0-9_-]{24,40})\n", out)
    assert m is not None, out
    pw = m.group(1)
    assert "ws://<coordinator>:9000/" in out and "security profile     1" in out and "CP1" in out
    with Ledger.open(tmp_path / "l.db") as led:
        stored = q.password_hash(led, "CP1")
        assert stored is not None and pw not in stored and verify_password(pw, stored)
    assert main(["charger", "list", *c]) == 0
    listed = capsys.readouterr().out
    assert re.search(r"CP1 +alice .* password \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", listed) and pw not in listed
    # rotation from a file; a bad file is a clear error and changes nothing
    short = tmp_path / "short"
    short.write_text("short\n")
    assert main(["charger", "password", "CP1", "--password-file", str(short), *c]) == 2
    assert "16..40 characters" in capsys.readouterr().err
    f = tmp_path / "pw"
    f.write_text("operator-chosen-password-42\n")
    assert main(["charger", "password", "CP1", "--password-file", str(f), *c]) == 0
    out = capsys.readouterr().out
    assert "operator-chosen-password-42" not in out and "the old one is refused" in out
    with Ledger.open(tmp_path / "l.db") as led:
        stored = q.password_hash(led, "CP1") or ""
        assert verify_password("operator-chosen-password-42", stored) and not verify_password(pw, stored)
    assert main(["charger", "password", "CP9", *c]) == 2
    assert "not bound" in capsys.readouterr().err
    # the older option form still binds; a charger without a password shows so in the list
    assert main(["charger", "bind", "--id", "CP2", "--member", "alice", *c]) == 0
    capsys.readouterr()
    with Ledger.open(tmp_path / "l.db") as led:
        q.bind(led, "CP3", "alice", T0)
    assert main(["charger", "list", *c]) == 0
    listed = capsys.readouterr().out
    assert re.search(r"CP3 +alice .* no password \(refused\)", listed), listed
