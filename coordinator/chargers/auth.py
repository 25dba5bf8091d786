"""Chargers' passwords (OCPP security profiles 1 and 2: HTTP Basic authentication on the WebSocket
upgrade, user = the charger id, password = the charger's AuthorizationKey / BasicAuthPassword).

Pure helpers, no I/O but the password file: a new password, the checks of one given by the
operator, its salted hash (scrypt; the ledger stores only the hash), the constant-time check of a
password against it, the parsing of an ``Authorization`` header that never raises anything but
:class:`BadCredentials`, and a rate-limited log of refused connections (a flood of attempts costs
a bounded number of log lines).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from coordinator.chargers import ChargerError
from coordinator.logwindow import LogWindow

log = logging.getLogger("peergrid.ocpp")

PASSWORD_MIN = 16  # OCPP 1.6 security whitepaper: AuthorizationKey 16..40 characters
PASSWORD_MAX = 40  # OCPP 2.0.1: BasicAuthPassword at most 40
HEADER_MAX = 512  # an Authorization header longer than this is refused unread
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SCHEME = "scrypt"


class BadCredentials(ChargerError):
    """An ``Authorization`` header that is missing, not Basic, not base64, without a colon or too
    long."""


def new_password() -> str:
    """A random password: 32 characters of ``[A-Za-z0-9_-]`` (allowed by both OCPP versions)."""
    return secrets.token_urlsafe(24)


def given_or_new(pw: str | None, where: str = "password") -> tuple[str, bool]:
    """(the password, whether it was generated): ``pw`` checked (:func:`check_password`), or with
    ``pw`` None a new one (:func:`new_password`). What ``peergrid charger bind`` / ``password`` and
    the operator API's ``PUT /api/chargers/{id}`` / ``POST .../password`` set."""
    if pw is None:
        return new_password(), True
    return check_password(pw, where), False


def check_password(pw: str, where: str = "password") -> str:
    """``pw`` if it is 16..40 printable ASCII characters without spaces, else a ChargerError."""
    if not PASSWORD_MIN <= len(pw) <= PASSWORD_MAX:
        raise ChargerError(
            f"{where}: a charger password must be {PASSWORD_MIN}..{PASSWORD_MAX} characters, got {len(pw)}"
        )
    if any(not "\x21" <= c <= "\x7e" for c in pw):
        raise ChargerError(f"{where}: a charger password must be printable ASCII without spaces")
    return pw


def read_password_file(path: Path) -> str:
    """The password in ``path`` (one line; a final newline is dropped), checked."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ChargerError(f"password file {path}: {e.strerror or e}") from None
    if len(raw) > 4 * PASSWORD_MAX:
        raise ChargerError(f"password file {path}: longer than a password ({len(raw)} bytes)")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ChargerError(f"password file {path}: a charger password must be printable ASCII") from None
    return check_password(text.removesuffix("\n").removesuffix("\r"), f"password file {path}")


def _derive(pw: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(pw.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=64 * 1024 * 1024)


def hash_password(pw: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64) of ``pw`` with a random salt: what the ledger stores."""
    salt = secrets.token_bytes(16)
    dk = _derive(pw, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    b64 = base64.b64encode
    return f"{_SCHEME}${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(dk).decode()}"


def verify_password(pw: str, stored: str) -> bool:
    """Whether ``pw`` matches the stored hash (a constant-time compare); False for a stored value
    that is not one of ours."""
    try:
        scheme, n, r, p, salt, dk = stored.split("$")
        if scheme != _SCHEME:
            return False
        want = base64.b64decode(dk, validate=True)
        got = _derive(pw, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(got, want)


def parse_basic(values: list[str]) -> tuple[str, str]:
    """(user, password) of the request's ``Authorization`` header values; BadCredentials says what
    is wrong (without the password)."""
    if not values:
        raise BadCredentials("no credentials")
    if len(values) > 1:
        raise BadCredentials(f"{len(values)} Authorization headers")
    header = values[0]
    if len(header) > HEADER_MAX:
        raise BadCredentials(f"Authorization header of {len(header)} characters")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise BadCredentials(f"Authorization scheme {scheme[:16]!r}, not Basic")
    try:
        text = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise BadCredentials("Authorization header is not base64 of UTF-8") from None
    user, colon, pw = text.partition(":")
    if not colon:
        raise BadCredentials("Authorization header without a colon between user and password")
    return user, pw


WINDOW_S = 60.0
MAX_KEYS = 256  # (charger, reason) pairs tracked per window; beyond: counted under ("*", reason)


@dataclass
class RefusedLog(LogWindow):
    """Refused connections, logged as a rate-limited summary per charger and reason
    (coordinator/logwindow.py): the first of each (charger, reason) in a window in full, the rest
    counted and summed up in one line when the window ends (at the next refusal or ``roll``).
    Unbound ids all count as ``unknown``."""

    log: logging.Logger = log
    summary: str = "charger {source} refused ({reason})"
    window_s: float = WINDOW_S
    max_keys: int = MAX_KEYS

    def refused(self, charger: str, reason: str, text: str) -> None:
        if self.first(charger, reason):
            log.warning("charger %s refused (%s): %s", charger, reason, text[:200])
