"""``peergrid board provision``: one board from the box to its first reading at the coordinator.

The steps, each with a clear error (:class:`~coordinator.provision.errors.BoardError`):

1. the port: given, or the one ESP32 USB bridge plugged in; free to open (``ports``);
2. the chip: esptool identifies an ESP32 (``chip.identify``);
3. MicroPython: 1.25 or later (ROMFS); with ``image``, installed by esptool when the board has
   none or another version than the image's (``chip.install``); the ROMFS partition is checked
   when the bundle has a ROMFS image;
4. the bundle is checked against its own manifest, copied (``mpremote``), and every file's
   SHA-256 read back from the board and compared with the manifest (``device``);
5. the first boot makes the key on the board and prints the public key, which is read back and
   enrolled for the member in the site's ledger directly (no copy and paste);
6. the board is reset and the ledger polled until its first signed reading is stored.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coordinator.ledger import Ledger
from coordinator.provision import chip, device, enrol, ports
from coordinator.provision.bundle import MANIFEST
from coordinator.provision.errors import (
    ENROL,
    NEVER_HEARD,
    NO_MICROPYTHON,
    NO_ROMFS,
    NOT_ESP32,
    TOO_OLD,
    BoardError,
    ProvisionError,
)
from coordinator.provision.flash import ROMFS

log = logging.getLogger("peergrid.provision")
Say = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    image: Path | None = None  # a MicroPython image to install when the board needs one
    new_key: bool = False  # delete the board's key first (key rotation)
    wait_s: float = 180.0  # for the first reading
    poll_s: float = 1.0


@dataclass(frozen=True)
class Enrolment:
    ledger: str  # the site's ledger (from its config)
    member: str


@dataclass(frozen=True)
class Outcome:
    board: str
    port: str
    chip: str
    micropython: str
    files: int  # verified on the board
    pubkey: bytes
    created: bool  # the key was made now (not kept from an earlier flash)
    secrets: str  # where the board keeps its passwords: nvs, file or none
    first_seq: int | None  # the first reading stored after the reset (None: not waited for)
    first_ts: int | None


def _version(v: tuple[int, int, int]) -> str:
    return ".".join(str(x) for x in v)


def micropython(port: str, c: chip.Chip, modem: bool, opts: Options, say: Say) -> device.Board:
    """The board's MicroPython, installed from ``opts.image`` when missing or another version."""
    want = chip.image_version(opts.image) if opts.image is not None else None
    if want is not None and want < device.MIN_VERSION:
        raise BoardError(
            TOO_OLD,
            f"the image {opts.image} holds MicroPython {_version(want)}: 1.25 or later is needed (ROMFS)",
        )
    try:
        b: device.Board | None = device.query(port)
    except BoardError as e:
        if e.kind != NO_MICROPYTHON:
            raise
        b = None
    if b is not None and (want is None or b.version == want):
        if b.version < device.MIN_VERSION:
            raise BoardError(
                TOO_OLD,
                f"MicroPython {b.version_text} on the board is too old: 1.25 or later is needed (ROMFS); "
                f"give --image with a MicroPython 1.25+ image for {c.family}",
            )
    elif opts.image is None or want is None:
        raise BoardError(
            NO_MICROPYTHON,
            f"no MicroPython on the board on {port}: give --image with a 1.25+ image for {c.family}",
        )
    else:
        had = "none" if b is None else b.version_text
        say(f"installing MicroPython {_version(want)} from {opts.image.name} (on the board: {had})")
        chip.install(port, c, opts.image, modem=modem)
        b = device.query(port)
        if b.version != want:
            raise BoardError(
                NO_MICROPYTHON,
                f"after installing {opts.image.name} the board runs MicroPython {b.version_text}",
            )
    if b.platform != "esp32":
        raise BoardError(NOT_ESP32, f"MicroPython on {port} runs on {b.platform!r}, not an ESP32")
    return b


def check_romfs(b: device.Board, bundle: Path, files: dict[str, str]) -> str:
    if ROMFS not in files:
        return "no ROMFS image in the bundle (the code loads into the heap: a board with PSRAM)"
    need = (bundle / ROMFS).stat().st_size
    if b.romfs < 0:
        raise BoardError(
            NO_ROMFS, f"MicroPython {b.version_text} on the board has no ROMFS support (vfs.rom_ioctl)"
        )
    if b.romfs == 0:
        raise BoardError(
            NO_ROMFS,
            "the board has no ROMFS partition: install a MicroPython image whose partition table has one",
        )
    if b.romfs < need:
        raise BoardError(NO_ROMFS, f"the board's ROMFS partition holds {b.romfs} bytes, the image is {need}")
    return f"ROMFS partition {b.romfs // 1024} KiB for a {need // 1024} KiB image"


def enrol_key(e: Enrolment, board: str, board_type: str, key: bytes) -> tuple[str, int | None]:
    """Enrol the key read from the board; (what was done, the seq of its newest stored reading)."""
    with Ledger.open(e.ledger) as ledger:
        try:
            msg = enrol.enrol(ledger, board, e.member, key, board_type, now=int(time.time()))
        except ProvisionError as err:
            raise BoardError(ENROL, str(err)) from None
        last = ledger.latest_reading(board)
    return msg, None if last is None else last.seq


def wait_reading(ledger_path: str, board: str, after: int | None, opts: Options) -> tuple[int, int]:
    """Poll the ledger until a reading of ``board`` newer than ``after`` is stored: (seq, ts)."""
    deadline = time.monotonic() + opts.wait_s
    with Ledger.open(ledger_path) as ledger:
        while True:
            r = ledger.first_reading(board) if after is None else ledger.latest_reading(board)
            if r is not None and (after is None or r.seq > after):
                return r.seq, r.ts
            if time.monotonic() >= deadline:
                raise BoardError(
                    NEVER_HEARD,
                    f"board {board} never heard from: no signed reading reached the coordinator within "
                    f"{opts.wait_s:.0f} s (is the coordinator running, Mosquitto reloaded with the board's "
                    "credentials, the Wi-Fi in reach? `mpremote connect PORT repl` shows what it prints)",
                )
            time.sleep(opts.poll_s)


def provision(bundle: Path, port: str, *, enrolment: Enrolment | None, opts: Options, say: Say) -> Outcome:
    """Take the board on ``port`` through every step; raise a BoardError at the first that fails."""
    try:
        man = json.loads((bundle / MANIFEST).read_text())
        board, board_type = str(man["board"]), str(man["board_type"])
    except (OSError, ValueError, KeyError) as e:
        raise ProvisionError(
            f"{bundle}: not a bundle ({e}); build one with `peergrid board bundle`"
        ) from None
    files = device.bundle_files(bundle)
    modem = ports.check(port)
    say(f"port {port}{'' if modem else ' (no modem lines: the board must be in its bootloader or running)'}")
    c = chip.identify(port, modem=modem)
    say(f"chip {c.description}, flash {c.flash_size}, MAC {c.mac}")
    b = micropython(port, c, modem, opts, say)
    say(f"MicroPython {b.version_text} ({b.machine}); {check_romfs(b, bundle, files)}")
    device.deploy(port, bundle, new_key=opts.new_key)
    n = device.verify(port, bundle, files)
    say(f"bundle copied, {n} files verified against {MANIFEST}")
    key, created, secrets = device.first_boot(port)
    say(f"public key {key.hex()} ({'generated now' if created else 'kept'}; passwords in {secrets})")
    after = None
    if enrolment is not None:
        msg, after = enrol_key(enrolment, board, board_type, key)
        say(msg)
    device.reset(port)
    if enrolment is None:
        say("reset; not enrolled (no site config given)")
        return Outcome(board, port, c.description, b.version_text, n, key, created, secrets, None, None)
    say(f"reset; waiting up to {opts.wait_s:.0f} s for its first reading")
    seq, ts = wait_reading(enrolment.ledger, board, after, opts)
    say(f"first reading stored: seq {seq}, ts {ts}")
    return Outcome(board, port, c.description, b.version_text, n, key, created, secrets, seq, ts)
