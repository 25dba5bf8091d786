"""Broker security for a site: per-board credentials, ACLs, TLS and the Mosquitto configuration.

A site's broker directory (e.g. ``/etc/peergrid/broker``) holds::

    site.json            grid, host names, ports, limits (written by ``peergrid broker init``)
    ca.crt ca.key        the local CA (pki.py); ca.key never leaves this directory
    server.crt server.key  Mosquitto's certificate
    secrets/<user>.password  each client's password (0600): the coordinator's, one per board
    hass.json            Home Assistant users (``hass-<name>``) and the boards each may read
    passwd passwd.local acl mosquitto.conf  generated from the above by ``render``

Each board's MQTT user name is its board id. The ACL lets a board publish only on its own
``reading``, ``ack``, ``status``, ``enrol`` and ``fwstate`` topics and read only its own ``order``
and ``update`` topics and the update images (``fw/#``); the coordinator reads every board's upward
topics of its grid and writes orders, updates and results. Each
listener has its own password file (``per_listener_settings``): the coordinator's loopback listener
knows the coordinator alone (``passwd.local``), the TLS listener the boards, Home Assistant users
and the coordinator (``passwd``; a coordinator on another host connects there), so a board's
credentials are refused on loopback. The TLS listener forces the MQTT client id to the user name, so
no board can take over another board's session, nor the coordinator's (``peergrid-<grid>...``): on
loopback only the coordinator's own user connects. A member's Home Assistant gets a user
``hass-<name>`` that may only read the discovery configs and states of the boards it is given
(``peergrid broker add-hass``), and only the coordinator may write them. The password files use
Mosquitto's own PBKDF2-SHA512 format (``$7$``). No client may send a packet over ``MAX_PACKET``
bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from coordinator.provision.errors import ProvisionError
from coordinator.provision.pki import Pki, create, write_secret
from protocol.messages import id_ok

COORDINATOR = "coordinator"
HASS = "hass-"  # prefix of Home Assistant users: each reads its member's boards' topics only
# the largest MQTT packet the broker takes: a signed frame is at most 512 bytes and a topic 128;
# Home Assistant discovery configs are the largest messages (~700 bytes)
MAX_PACKET = 4096
ITERATIONS = 101  # what mosquitto_passwd uses
BOARD_WRITES = ("reading", "ack", "status", "enrol", "fwstate")


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """A Mosquitto 2 password-file hash: ``$7$<iterations>$<salt b64>$<sha512 pbkdf2 b64>``."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    dk = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"


def check_password(password: str, line_hash: str) -> bool:
    try:
        _, kind, it, salt, dk = line_hash.split("$")
        if kind != "7":
            return False
        want = hash_password(password, salt=base64.b64decode(salt), iterations=int(it))
    except ValueError:
        return False
    return secrets.compare_digest(want.split("$")[4], dk)


@dataclass(frozen=True)
class SiteSettings:
    grid: str
    hosts: tuple[str, ...]  # names/addresses in the server certificate; hosts[0] is what boards use
    port: int = 8883  # TLS listener for boards
    local_port: int = 1883  # the coordinator, on the broker's own host
    local_bind: str = "127.0.0.1"
    max_inflight: int = 1000  # >= the coordinator's ingest.batch: it acks after each commit
    max_queued: int = 100_000


class Site:
    """A broker directory: ``Site.init(...)`` once, then ``Site(dir)`` to add boards and render."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pki = Pki(directory)
        try:
            raw = json.loads((directory / "site.json").read_text())
            raw["hosts"] = tuple(raw["hosts"])
            self.settings = SiteSettings(**raw)
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise ProvisionError(
                f"{directory}: not a broker directory (run `peergrid broker init`): {e}"
            ) from None

    @classmethod
    def init(cls, directory: Path, settings: SiteSettings) -> Site:
        if not id_ok(settings.grid):
            raise ProvisionError(f"grid {settings.grid!r} is not an identifier ([a-z0-9_-], 1-32)")
        for p in (settings.port, settings.local_port):
            if not 1 <= p <= 65535:
                raise ProvisionError(f"port {p} is not 1..65535")
        if settings.max_inflight < 1 or settings.max_queued < 1:
            raise ProvisionError("max_inflight and max_queued must be positive")
        directory.mkdir(parents=True, exist_ok=True)
        create(directory, settings.grid, list(settings.hosts))
        (directory / "site.json").write_text(json.dumps(asdict(settings), indent=1, sort_keys=True) + "\n")
        site = cls(directory)
        site.password(COORDINATOR)
        site.render()
        return site

    # -- credentials ----------------------------------------------------------------------

    def _secret(self, user: str) -> Path:
        return self.directory / "secrets" / f"{user}.password"

    def password(self, user: str) -> str:
        """The user's password, created on first use and kept (bundles stay reproducible)."""
        if not id_ok(user):
            raise ProvisionError(f"user {user!r} is not an identifier ([a-z0-9_-], 1-32)")
        p = self._secret(user)
        if not p.exists():
            p.parent.mkdir(mode=0o700, exist_ok=True)
            write_secret(p, secrets.token_urlsafe(24).encode())
        return p.read_text().strip()

    def add_board(self, board: str) -> str:
        if board == COORDINATOR or board.startswith(HASS):
            raise ProvisionError(f"{board!r} is reserved: no board id is {COORDINATOR!r} or starts {HASS!r}")
        pw = self.password(board)
        self.render()
        return pw

    def hass_users(self) -> dict[str, list[str]]:
        """Home Assistant user -> the boards whose topics it may read."""
        p = self.directory / "hass.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def add_hass(self, name: str, boards: list[str]) -> tuple[str, str]:
        """Credentials for a member's Home Assistant (user ``hass-<name>``), read-only on the
        discovery configs and states of ``boards``: (user, password)."""
        user = HASS + name
        if not id_ok(name) or not id_ok(user) or not boards or not all(id_ok(b) for b in boards):
            raise ProvisionError(
                f"a Home Assistant user needs a name and board ids ([a-z0-9_-]); got {name!r}"
            )
        users = self.hass_users()
        users[user] = sorted(set(boards))
        (self.directory / "hass.json").write_text(json.dumps(users, indent=1, sort_keys=True) + "\n")
        pw = self.password(user)
        self.render()
        return user, pw

    def revoke(self, board: str) -> bool:
        """Remove a board's credentials (a replaced or stolen board); True if it had any."""
        p = self._secret(board)
        if board == COORDINATOR or not p.exists():
            return False
        p.unlink()
        self.render()
        return True

    def users(self) -> list[str]:
        d = self.directory / "secrets"
        return sorted(p.name.removesuffix(".password") for p in d.glob("*.password")) if d.exists() else []

    # -- generated files ------------------------------------------------------------------

    def acl(self) -> str:
        g = self.settings.grid
        lines = [
            "# generated by `peergrid broker config`: re-run it instead of editing",
            "# every board (its MQTT user name is its board id): its own topics only",
            *(f"pattern write peergrid/{g}/b/%u/{leaf}" for leaf in BOARD_WRITES),
            f"pattern read peergrid/{g}/b/%u/order",
            f"pattern read peergrid/{g}/b/%u/update",
            "# update images in chunks (board update): signed by the release key, read by every board",
            f"topic read peergrid/{g}/fw/#",
            "",
            f"user {COORDINATOR}",
            *(f"topic read peergrid/{g}/b/+/{leaf}" for leaf in BOARD_WRITES),
            *(f"topic read $share/+/peergrid/{g}/b/+/{leaf}" for leaf in BOARD_WRITES),
            f"topic write peergrid/{g}/b/+/order",
            f"topic write peergrid/{g}/b/+/update",
            f"topic write peergrid/{g}/fw/#",
            f"topic readwrite peergrid/{g}/market/#",
            "# Home Assistant discovery and states (coordinator [hass] discovery = true)",
            "topic write homeassistant/sensor/#",
            f"topic write peergrid/{g}/hass/#",
        ]
        for user, boards in sorted(self.hass_users().items()):
            if user not in self.users():  # revoked
                continue
            lines += ["", f"user {user}"]
            for b in boards:
                lines.append(f"topic read homeassistant/sensor/peergrid_{g}_{b}/#")
                lines.append(f"topic read peergrid/{g}/hass/{b}")
        return "\n".join(lines) + "\n"

    def passwd(self) -> str:
        """The TLS listener's users: the boards, Home Assistant users and the coordinator."""
        return "".join(f"{u}:{hash_password(self.password(u))}\n" for u in self.users())

    def passwd_local(self) -> str:
        """The loopback listener's one user: the coordinator."""
        return f"{COORDINATOR}:{hash_password(self.password(COORDINATOR))}\n"

    def mosquitto_conf(self) -> str:
        return mosquitto_conf(self.settings, self.directory, self.pki)

    def render(self) -> list[Path]:
        """Write passwd, passwd.local, acl and mosquitto.conf; return their paths."""
        out = []
        for name, text in (
            ("passwd", self.passwd()),
            ("passwd.local", self.passwd_local()),
            ("acl", self.acl()),
            ("mosquitto.conf", self.mosquitto_conf()),
        ):
            p = self.directory / name
            write_secret(p, text.encode())
            out.append(p)
        return out


SAMPLE = SiteSettings("walenstadt", ("pi.local",))
SAMPLE_DIR = Path("/etc/peergrid/broker")
SAMPLE_HEADER = """# What `peergrid broker init --dir /etc/peergrid/broker --grid walenstadt --host pi.local`
# writes to /etc/peergrid/broker/mosquitto.conf (shown here for reference; use the generated file and
# regenerate it with `peergrid broker config --dir /etc/peergrid/broker`, never edit it):
#   sudo ln -s /etc/peergrid/broker/mosquitto.conf /etc/mosquitto/conf.d/peergrid.conf
#   sudo systemctl restart mosquitto      # reload is enough after adding or revoking boards
# This file itself is written by `python -m coordinator.provision.brokerconf`.
"""


def mosquitto_conf(s: SiteSettings, d: Path, pki: Pki) -> str:
    """The Mosquitto configuration of a broker directory ``d`` (``Site.render`` writes it)."""
    return f"""# peergrid broker security for grid {s.grid!r}
# generated by `peergrid broker config`: re-run it instead of editing
# (include it from /etc/mosquitto/conf.d/; reload with `systemctl reload mosquitto`)
# each listener has its own users: the coordinator on loopback, boards and Home Assistant on TLS
per_listener_settings true
# the coordinator acknowledges readings only after committing a batch of up to ingest.batch
# (default 500): the broker's window of unacknowledged messages per client must be larger
max_inflight_messages {s.max_inflight}
# kept per client while it is offline or behind: {s.max_queued} readings are about
# {s.max_queued / 36_000:.1f} h of 100 boards at one reading per 10 s
max_queued_messages {s.max_queued}
max_queued_bytes {s.max_queued * 1024}
# no client may send a packet larger than this (a signed frame is at most 512 bytes)
max_packet_size {MAX_PACKET}
persistent_client_expiration 30d

# the coordinator, on this host: its user alone (a board's credentials are refused here)
listener {s.local_port} {s.local_bind}
allow_anonymous false
password_file {d / "passwd.local"}
acl_file {d / "acl"}

# boards and Home Assistant: TLS with the site's CA; the client id is the user name (no session
# takeover, of a board or of the coordinator's sessions on loopback)
listener {s.port}
allow_anonymous false
password_file {d / "passwd"}
acl_file {d / "acl"}
cafile {pki.ca_cert}
certfile {pki.server_cert}
keyfile {pki.server_key}
tls_version tlsv1.2
use_username_as_clientid true
"""


def sample_conf() -> str:
    """``deploy/mosquitto-peergrid.conf``: what ``broker init`` writes for the sample site."""
    return SAMPLE_HEADER + mosquitto_conf(SAMPLE, SAMPLE_DIR, Pki(SAMPLE_DIR))


if __name__ == "__main__":  # regenerate the sample: python -m coordinator.provision.brokerconf
    import sys

    sys.stdout.write(sample_conf())
