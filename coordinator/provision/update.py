"""Over-the-air updates of the boards' code (``peergrid board update``; the board's side is
firmware/ota.py).

The image is a bundle's ``romfs.img`` (the compiled modules, run in place from the board's ROMFS
partition). It is published once per grid, retained, in chunks on
``peergrid/<grid>/fw/<digest>/<n>``; each board gets its own manifest (protocol ``Update``:
version, board type, minimum version, size, chunk size, SHA-256, downgrade allowed), retained on
its ``update`` topic and signed by the operator's **release key**: a key of its own, kept by the
operator (``peergrid board release-key``), never the coordinator's order key, whose public half
goes into every bundle (``board bundle --release-key``). A coordinator that is broken into can
then still send orders, but cannot put code onto the boards.

The board fetches the chunks one at a time over its MQTT session (subscribe, the broker hands
over the retained chunk, unsubscribe): no second server, port or certificate on the Pi, the same
TLS link and ACLs as its readings, it resumes at any chunk after a drop or a power cut, and the
broker serves the image to all boards even while the coordinator is stopped. Each board reports
on its ``fwstate`` topic (retained ``UpdateState``): downloading, refused with the reason,
pending, confirmed, rolled back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from coordinator.provision.errors import ProvisionError
from coordinator.service.mqtt import BrokerAddress, Connection
from protocol import crypto, frame, messages, topics

CHUNK = 1024  # bytes per chunk: one MQTT packet well inside the board's 2 KiB buffer
ROMFS_MAGIC = b"\xd2\xcd\x31"
STATES = {
    messages.U_REFUSED: "refused",
    messages.U_DOWNLOADING: "downloading",
    messages.U_PENDING: "pending (restarting into it)",
    messages.U_CONFIRMED: "confirmed",
    messages.U_ROLLED_BACK: "rolled back",
}
_VERSION = re.compile(r"^\d{1,5}\.\d{1,5}\.\d{1,5}$")


def new_release_key(path: Path) -> bytes:
    """Create the release key (an Ed25519 seed, 0600) at ``path`` and its public half at
    ``path.pub`` (hex); return the public key. Refuses to overwrite a key."""
    if path.exists():
        raise ProvisionError(f"{path} exists: a release key is never overwritten (boards trust it)")
    seed = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(seed.hex() + "\n")
    pub = crypto.SigningKey(seed).public
    path.with_suffix(path.suffix + ".pub").write_text(pub.hex() + "\n")
    return pub


def load_release_key(path: Path) -> crypto.SigningKey:
    try:
        seed = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as e:
        raise ProvisionError(f"release key {path}: {e}") from None
    if len(seed) != 32:
        raise ProvisionError(f"release key {path}: not a 32-byte key (peergrid board release-key)")
    return crypto.SigningKey(seed)


def release_public(text: str) -> bytes:
    """The release key's public half from 64 hex digits, a ``.pub`` file, or the key file itself."""
    p = Path(text)
    if p.exists():
        raw = p.read_text().strip()
        key = bytes.fromhex(raw) if re.fullmatch(r"[0-9a-fA-F]{64}", raw) else b""
        if not key:
            raise ProvisionError(f"{p}: not a release key (64 hex digits)")
        return key if p.suffix == ".pub" else crypto.SigningKey(key).public
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    raise ProvisionError(f"release key {text!r}: neither a key file nor 64 hex digits")


@dataclass(frozen=True)
class Image:
    data: bytes
    version: str
    board_type: str

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.data).digest()

    def chunks(self, size: int = CHUNK) -> list[bytes]:
        return [self.data[i : i + size] for i in range(0, len(self.data), size)]


def image(path: Path, version: str, board_type: str) -> Image:
    """An update image: a ROMFS image file (a bundle's romfs.img)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ProvisionError(f"image {path}: {e}") from None
    if not data.startswith(ROMFS_MAGIC):
        raise ProvisionError(f"{path} is not a ROMFS image (build the bundle with --romfs)")
    if not _VERSION.match(version):
        raise ProvisionError(f"version {version!r} is not major.minor.patch")
    return Image(data, version, board_type)


def from_bundle(bundle: Path) -> Image:
    """The image, version and board type of a bundle built with --romfs."""
    try:
        man = json.loads((bundle / "MANIFEST.json").read_text())
    except (OSError, ValueError) as e:
        raise ProvisionError(f"{bundle}: no bundle manifest ({e})") from None
    if not man.get("romfs") or "version" not in man:
        raise ProvisionError(f"{bundle}: build the bundle with --romfs (updates carry its romfs.img)")
    return image(bundle / "romfs.img", man["version"], man["board_type"])


def manifest(
    img: Image,
    grid: str,
    board: str,
    key: crypto.SigningKey,
    *,
    min_fw: str = "",
    allow_downgrade: bool = False,
    now: int | None = None,
) -> tuple[str, bytes]:
    """(topic, signed Update frame) of ``img`` for one board."""
    if min_fw and not _VERSION.match(min_fw):
        raise ProvisionError(f"minimum version {min_fw!r} is not major.minor.patch")
    msg = messages.Update(
        board=board,
        version=img.version,
        board_type=img.board_type,
        min_fw=min_fw,
        size=len(img.data),
        chunk=CHUNK,
        digest=img.digest,
        downgrade=1 if allow_downgrade else 0,
        ts=int(time.time()) if now is None else now,
    )
    t = topics.board_topic(grid, board, "update")
    return t, frame.seal(msg, t, key)


async def publish(
    addr: BrokerAddress, grid: str, img: Image, manifests: Iterable[tuple[str, bytes]]
) -> int:
    """Publish the chunks (retained, once per grid) and each board's manifest (retained)."""
    n = 0
    async with Connection(addr, f"peergrid-{grid}-update") as conn:
        for i, c in enumerate(img.chunks()):
            await conn.publish(topics.chunk_topic(grid, img.digest, i), c, retain=True)
        for t, fr in manifests:
            await conn.publish(t, fr, retain=True)
            n += 1
    return n


async def follow(
    addr: BrokerAddress, grid: str, boards: set[str], version: str, timeout: float
) -> dict[str, messages.UpdateState]:
    """The boards' reports on ``version`` until each is final (confirmed, refused, rolled back)
    or ``timeout`` s pass; printed as they come. Reports are not verified here (the ledger's
    board keys are not needed for progress); the boards' status readings are."""
    final = {messages.U_REFUSED, messages.U_CONFIRMED, messages.U_ROLLED_BACK}
    last: dict[str, messages.UpdateState] = {}

    async def run() -> None:
        async with Connection(addr, f"peergrid-{grid}-update-follow") as conn:
            await conn.subscribe(topics.board_filter(grid, "fwstate"))
            async for m in conn.messages():
                try:
                    body, _ = frame.split(m.payload)
                    st = messages.decode(bytes(body))
                except Exception:  # noqa: BLE001  (anything malformed is skipped)
                    continue
                if not isinstance(st, messages.UpdateState) or st.board not in boards:
                    continue
                if st.version != version:
                    continue
                last[st.board] = st
                why = f": {st.reason}" if st.reason else ""
                print(f"{st.board}: {version} {STATES.get(st.state, st.state)}{why} (running {st.fw})")
                if all(b in last and last[b].state in final for b in boards):
                    return

    try:
        await asyncio.wait_for(run(), timeout)
    except TimeoutError:
        pass
    return last
