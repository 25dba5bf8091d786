"""A local certificate authority for the broker's TLS, made with ``cryptography``.

The CA signs one server certificate for Mosquitto (names and addresses the boards and the
coordinator connect to). Boards carry the CA certificate in DER form (``ca.der``) and check the
server against it; nothing else needs a certificate (clients authenticate with passwords).
Keys are ECDSA P-256: the ESP32's mbedTLS verifies them quickly.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from coordinator.provision.errors import ProvisionError

CA_DAYS = 3650
SERVER_DAYS = 825


@dataclass(frozen=True)
class Pki:
    """The files of a site's CA in ``directory``."""

    directory: Path

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    def ca_der(self) -> bytes:
        """The CA certificate in DER, as a board loads it."""
        try:
            cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        except (OSError, ValueError) as e:
            raise ProvisionError(f"{self.ca_cert}: no CA certificate ({e})") from None
        return cert.public_bytes(serialization.Encoding.DER)


def write_secret(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``: a new file is readable by its owner only (0600);
    a file that exists keeps its group and mode (e.g. made readable by the broker's group)."""
    mode, gid = 0o600, -1
    if path.exists():
        st = path.stat()
        mode, gid = st.st_mode & 0o777, st.st_gid
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        try:
            os.fchown(f.fileno(), -1, gid)
        except PermissionError:
            pass  # not allowed to give it that group: it stays the owner's alone
        os.fchmod(f.fileno(), mode)
    os.replace(tmp, path)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def create(directory: Path, name: str, hosts: list[str], *, now: datetime.datetime | None = None) -> Pki:
    """Create the CA (if there is none yet) and a server certificate for ``hosts``."""
    if not hosts:
        raise ProvisionError("the broker certificate needs at least one host name or address")
    pki = Pki(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = now or datetime.datetime.now(datetime.UTC)
    if pki.ca_key.exists() and pki.ca_cert.exists():
        ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ProvisionError(f"{pki.ca_key} is not an EC private key")
        ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    else:
        ca_key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"peergrid {name} CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        write_secret(pki.ca_key, _pem_key(ca_key))
        pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_secret(pki.server_key, _pem_key(key))
    pki.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pki
