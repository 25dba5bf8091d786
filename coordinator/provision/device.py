"""MicroPython on the board, through ``mpremote``: which version it runs and whether it has a ROMFS
partition, copying a bundle, reading every file's SHA-256 back, the first boot that makes the
board's key, and the reset that starts the firmware.

Each step is one ``mpremote connect PORT ...`` run (it soft-resets the board first, so a step
starts from a clean interpreter); what the board prints for us is tagged ``peergrid-...``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from coordinator.provision.bundle import MANIFEST
from coordinator.provision.errors import (
    COPY_FAILED,
    KEY_READBACK,
    MANIFEST_MISMATCH,
    NO_MICROPYTHON,
    TOOL,
    BoardError,
    ProvisionError,
)
from coordinator.provision.flash import FIRST_BOOT, FORGET_SLOTS, ROMFS, entries, parse_pubkey

MIN_VERSION = (1, 25, 0)  # vfs.rom_ioctl: code run in place from a ROMFS partition

QUERY = """import sys
try:
 import vfs
 _n = vfs.rom_ioctl(1) if hasattr(vfs, 'rom_ioctl') else -1
 if _n > 0:
  _d = vfs.rom_ioctl(2, 0)
  _n = 0 if isinstance(_d, int) else len(_d)
except Exception:
 _n = -1
print('peergrid-board', '.'.join(str(x) for x in sys.implementation.version[:3]), _n,
      sys.platform, sys.implementation._machine)
"""

DIGESTS = """import hashlib, binascii
def _h(p):
 h = hashlib.sha256()
 b = bytearray(512)
 try:
  with open(p, 'rb') as f:
   while True:
    n = f.readinto(b)
    if not n:
     break
    h.update(memoryview(b)[:n])
 except OSError:
  return '-'
 return binascii.hexlify(h.digest()).decode()
for _p in %r:
 print('peergrid-digest', _p, _h(_p))
_n = %d
if _n:
 import vfs
 _m = memoryview(vfs.rom_ioctl(2, 0))
 h = hashlib.sha256()
 for _i in range(0, _n, 512):
  h.update(_m[_i:min(_i + 512, _n)])
 print('peergrid-digest', %r, binascii.hexlify(h.digest()).decode())
"""


@dataclass(frozen=True)
class Board:
    version: tuple[int, int, int]
    romfs: int  # bytes in ROMFS partition 0; 0: no partition; -1: this MicroPython has no ROMFS
    platform: str
    machine: str

    @property
    def version_text(self) -> str:
        return ".".join(str(x) for x in self.version)


def mpremote(port: str, args: list[str], *, what: str, cwd: Path | None = None, timeout: float = 120) -> str:
    """One ``mpremote`` session on ``port``; its output, or a BoardError that says what failed."""
    argv = [sys.executable, "-m", "mpremote", "connect", port, *args]
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BoardError(TOOL, f"{what}: mpremote on {port} did not finish within {timeout:.0f} s") from None
    out = proc.stdout + proc.stderr
    if proc.returncode == 0:
        return proc.stdout
    if "No module named mpremote" in out:
        raise BoardError(TOOL, "mpremote is not installed: pip install -e '.[provision]'")
    if "could not enter raw repl" in out:
        raise BoardError(
            NO_MICROPYTHON, f"{what}: no MicroPython REPL answered on {port} (a blank or foreign firmware)"
        )
    if "failed to access" in out:
        raise BoardError(
            TOOL, f"{what}: mpremote could not open {port} (unplugged, or taken by another program)"
        )
    lines = [line.strip() for line in out.strip().splitlines() if line.strip()]
    raise BoardError(TOOL, f"{what} failed on {port}: {lines[-1] if lines else f'exit {proc.returncode}'}")


def query(port: str, *, timeout: float = 60) -> Board:
    """The MicroPython the board runs and its ROMFS partition."""
    out = mpremote(port, ["exec", QUERY], what="asking the board its MicroPython version", timeout=timeout)
    for line in out.splitlines():
        parts = line.split(None, 4)
        if len(parts) >= 4 and parts[0] == "peergrid-board":
            try:
                version = tuple(int(x) for x in parts[1].split("."))
                romfs = int(parts[2])
            except ValueError:
                break
            if len(version) != 3:
                break
            return Board(
                (version[0], version[1], version[2]), romfs, parts[3], parts[4] if len(parts) > 4 else ""
            )
    raise BoardError(TOOL, f"the board on {port} did not say its version; it printed: {out.strip()[-300:]}")


def bundle_files(bundle: Path) -> dict[str, str]:
    """The bundle's files and their SHA-256 from its manifest, checked against the files
    themselves (a bundle changed after it was built is refused before anything is copied)."""
    try:
        files: dict[str, str] = json.loads((bundle / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ProvisionError(
            f"{bundle}: not a bundle ({e}); build one with `peergrid board bundle`"
        ) from None
    bad = []
    for name, digest in sorted(files.items()):
        try:
            if hashlib.sha256((bundle / name).read_bytes()).hexdigest() != digest:
                bad.append(name)
        except OSError:
            bad.append(name)
    if bad:
        raise BoardError(
            MANIFEST_MISMATCH,
            f"bundle {bundle}: {', '.join(bad)} differ from its {MANIFEST} "
            "(changed after the build?): rebuild it",
        )
    return files


def deploy(port: str, bundle: Path, *, new_key: bool = False, timeout: float = 600) -> str:
    """Copy the bundle (and write its ROMFS image into the partition) in one session."""
    args: list[str] = []
    if new_key:
        args += ["exec", "import os\ntry:\n os.remove('key.bin')\nexcept OSError:\n pass", "+"]
    if (bundle / ROMFS).exists():  # into slot 0: the slot record and an update under way go
        args += ["exec", FORGET_SLOTS, "+", "romfs", "deploy", ROMFS, "+"]
    args += ["fs", "cp", "-r", *entries(bundle), ":"]
    try:
        return mpremote(port, args, what="copying the bundle", cwd=bundle, timeout=timeout)
    except BoardError as e:
        if e.kind != TOOL:
            raise
        raise BoardError(
            COPY_FAILED,
            f"copy did not finish (board unplugged or reset?): {str(e).split(': ', 1)[-1]}; "
            "provisioning it again copies what is missing",
        ) from None


def verify(port: str, bundle: Path, files: dict[str, str], *, timeout: float = 300) -> int:
    """Read every file's SHA-256 back from the board (and the ROMFS partition's, over the image's
    length) and compare with the manifest; return how many were checked."""
    names = sorted(n for n in files if n != ROMFS) + [MANIFEST]
    expect = dict(files, **{MANIFEST: hashlib.sha256((bundle / MANIFEST).read_bytes()).hexdigest()})
    romfs = (bundle / ROMFS).stat().st_size if ROMFS in files else 0
    code = DIGESTS % (names, romfs, ROMFS)
    out = mpremote(port, ["exec", code], what="reading the files' digests back", timeout=timeout)
    got = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "peergrid-digest":
            got[parts[1]] = parts[2]
    bad = []
    for name in sorted(expect):
        if got.get(name) != expect[name]:
            state = "missing" if got.get(name) in (None, "-") else f"sha256 {got[name][:12]}..."
            bad.append(f"{name} ({state}, bundle {expect[name][:12]}...)")
    if bad:
        raise BoardError(
            MANIFEST_MISMATCH,
            f"{len(bad)} of {len(expect)} files on the board differ from the bundle's {MANIFEST}: "
            f"{'; '.join(bad[:4])}{' ...' if len(bad) > 4 else ''}",
        )
    return len(expect)


def first_boot(port: str, *, timeout: float = 120) -> tuple[bytes, bool, str]:
    """Run the first-boot step and read the board's public key back: (key, created, where the
    passwords are kept)."""
    try:
        out = mpremote(port, ["exec", FIRST_BOOT], what="the first boot", timeout=timeout)
    except BoardError as e:
        if e.kind != TOOL:
            raise
        raise BoardError(KEY_READBACK, f"key read-back failed: {e}") from None
    try:
        key, created = parse_pubkey(out)
    except ProvisionError:
        raise BoardError(
            KEY_READBACK,
            f"key read-back failed: the board printed no public key; it printed: {out.strip()[-400:]}",
        ) from None
    where = "?"
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "peergrid-pubkey":
            where = parts[3]
    return key, created, where


def reset(port: str, *, timeout: float = 60) -> None:
    """Hard-reset the board: its main.py starts the firmware."""
    mpremote(port, ["reset"], what="resetting the board", timeout=timeout)
