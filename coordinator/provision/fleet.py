"""A pilot's fleet in one sitting: a batch file of boards, provisioned one after another as they are
plugged in, with progress and a summary table (ok / failed with the reason / skipped).

The batch file is CSV (header ``id,member,board,wifi``) or TOML::

    [defaults]                         # for the boards below
    board = "esp32-devkitc-pzem004t"
    wifi = "village"

    [wifi.village]                     # Wi-Fi profiles: the password never in the file
    ssid = "village-net"
    password_env = "PEERGRID_WIFI_VILLAGE"   # or password_file = "/etc/peergrid/wifi-village"

    [[boards]]
    id = "m-alice"
    member = "alice"                   # board = ..., wifi = ... override the defaults

A CSV batch takes its Wi-Fi profiles from a TOML file of ``[wifi.NAME]`` tables; an empty
``wifi`` column means no Wi-Fi (a wired or test board). Running the same batch again is safe:
a board already active for its member with a stored reading is skipped, the others are bundled
again (same credentials, same bytes) and provisioned.
"""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coordinator.ledger import Ledger
from coordinator.provision import bundle, pipeline
from coordinator.provision.errors import BoardError, ProvisionError
from coordinator.provision.ports import Watcher
from protocol.messages import id_ok

log = logging.getLogger("peergrid.provision")


@dataclass(frozen=True)
class Wifi:
    ssid: str
    password: str | None


@dataclass(frozen=True)
class Entry:
    id: str
    member: str
    board: str  # board type (boards/) or a board file path
    wifi: str | None  # profile name


@dataclass(frozen=True)
class Fleet:
    entries: list[Entry]
    wifi: dict[str, Wifi]


@dataclass(frozen=True)
class Result:
    entry: Entry
    status: str  # ok, failed, skipped
    detail: str
    kind: str = ""  # a BoardError kind when failed
    pubkey: bytes | None = None
    first_seq: int | None = None


def _profiles(where: str, tables: Any) -> dict[str, Wifi]:
    if tables is None:
        return {}
    if not isinstance(tables, dict):
        raise ProvisionError(f"{where}: wifi must be a table of profiles ([wifi.NAME])")
    out = {}
    for name, t in tables.items():
        if not isinstance(t, dict) or not isinstance(t.get("ssid"), str) or not t["ssid"]:
            raise ProvisionError(f"{where}: wifi.{name}.ssid is required (text)")
        if "password" in t:
            raise ProvisionError(
                f"{where}: wifi.{name}.password: no passwords in the batch file; "
                "give password_env or password_file"
            )
        pw = None
        if "password_env" in t:
            pw = os.environ.get(str(t["password_env"]))
            if pw is None:
                raise ProvisionError(
                    f"{where}: wifi.{name}: the environment variable {t['password_env']} is not set"
                )
        elif "password_file" in t:
            try:
                pw = Path(str(t["password_file"])).read_text().strip()
            except OSError as e:
                raise ProvisionError(f"{where}: wifi.{name}.password_file: {e.strerror}") from None
        out[str(name)] = Wifi(t["ssid"], pw)
    return out


def _entry(where: str, row: dict[str, Any], defaults: dict[str, Any]) -> Entry:
    def text(key: str, required: bool = True) -> str | None:
        v = row.get(key, defaults.get(key))
        if v is None or v == "":
            if required:
                raise ProvisionError(f"{where}: {key} is required")
            return None
        if not isinstance(v, str):
            raise ProvisionError(f"{where}: {key} must be text, got {v!r}")
        return v.strip()

    bid, member, board = text("id"), text("member"), text("board")
    assert bid is not None and member is not None and board is not None
    if not id_ok(bid):
        raise ProvisionError(f"{where}: id {bid!r} is not a board id ([a-z0-9_-], 1-32)")
    return Entry(bid, member, board, text("wifi", required=False))


def load(path: Path, wifi_profiles: Path | None = None) -> Fleet:
    """Read and check a batch file; every problem names the file, the row and the field."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ProvisionError(f"{path}: {e.strerror}") from None
    entries = []
    if path.suffix == ".toml":
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ProvisionError(f"{path}: {e}") from None
        d = doc.get("defaults", {})
        if not isinstance(d, dict) or set(d) - {"board", "wifi"}:
            raise ProvisionError(f"{path}: [defaults] takes board and wifi only")
        defaults = dict(d)
        profiles = _profiles(str(path), doc.get("wifi") if isinstance(doc.get("wifi"), dict) else None)
        rows = doc.get("boards")
        if not isinstance(rows, list) or not rows:
            raise ProvisionError(f"{path}: no [[boards]]")
        for i, row in enumerate(rows, 1):
            if not isinstance(row, dict):
                raise ProvisionError(f"{path}: boards #{i} is not a table")
            entries.append(_entry(f"{path} boards #{i}", row, defaults))
    else:
        reader = csv.DictReader(text.splitlines())
        missing = {"id", "member", "board"} - set(reader.fieldnames or ())
        if missing:
            raise ProvisionError(
                f"{path}: the header needs id,member,board[,wifi]; missing {', '.join(sorted(missing))}"
            )
        profiles = {}
        for row in reader:
            entries.append(_entry(f"{path} line {reader.line_num}", row, {}))
        if not entries:
            raise ProvisionError(f"{path}: no boards")
    if wifi_profiles is not None:
        try:
            doc = tomllib.loads(wifi_profiles.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ProvisionError(f"{wifi_profiles}: {e}") from None
        profiles.update(_profiles(str(wifi_profiles), doc.get("wifi")))
    seen: set[str] = set()
    for ent in entries:
        if ent.id in seen:
            raise ProvisionError(f"{path}: board id {ent.id!r} appears twice")
        seen.add(ent.id)
        if ent.wifi is not None and ent.wifi not in profiles:
            raise ProvisionError(
                f"{path}: board {ent.id}: no Wi-Fi profile {ent.wifi!r} "
                f"(known: {', '.join(profiles) or 'none'})"
            )
    return Fleet(entries, profiles)


@dataclass
class Batch:
    """How the fleet is bundled and where it reports."""

    grid: str
    coordinator_key: bytes
    ledger: str
    out: Path  # one bundle directory per board
    broker: Callable[[str], bundle.Broker]  # a board's broker settings (credentials made on first use)
    arch: str | None = None
    romfs: bool = False
    opts: pipeline.Options = field(default_factory=pipeline.Options)
    reload: str | None = None  # a command that makes the broker read new credentials
    plug_timeout_s: float = 600.0


def done(ledger: Ledger, e: Entry) -> bool:
    """Already provisioned: active for its member, with a stored reading."""
    for b in ledger.boards("active"):
        if b.board_id == e.id and b.member_id == e.member:
            return ledger.first_reading(e.id) is not None
    return False


def _echo(msg: str) -> None:
    print(msg, flush=True)


def run(fleet: Fleet, batch: Batch, ports: Watcher, echo: Callable[[str], None] = _echo) -> list[Result]:
    """Provision the fleet board after board; return one result per entry, in the batch's order."""
    n = len(fleet.entries)
    results: dict[str, Result] = {}
    with Ledger.open(batch.ledger) as ledger:
        todo = []
        for e in fleet.entries:
            if done(ledger, e):
                results[e.id] = Result(e, "skipped", "already enrolled and reporting")
            else:
                todo.append(e)
    bundles: dict[str, Path] = {}
    for e in todo:
        try:
            w = fleet.wifi[e.wifi] if e.wifi else None
            inp = bundle.Inputs(
                board_id=e.id,
                board_file=bundle.board_file(e.board),
                grid=batch.grid,
                coordinator_key=batch.coordinator_key,
                broker=batch.broker(e.id),
                wifi_ssid=w.ssid if w else None,
                wifi_password=w.password if w else None,
                arch=batch.arch,
                romfs=batch.romfs,
            )
            bundle.build(inp, batch.out / e.id)
            bundles[e.id] = batch.out / e.id
        except ProvisionError as err:  # includes a board file's errors
            results[e.id] = Result(e, "failed", f"bundle: {err}", "bundle")
    echo(
        f"{n} boards: {len(bundles)} to provision, {n - len(todo)} already done, "
        f"{len(todo) - len(bundles)} not bundled"
    )
    if bundles and batch.reload:
        r = subprocess.run(batch.reload, shell=True, capture_output=True, text=True, check=False)
        echo(
            f"broker reloaded ({batch.reload})"
            if r.returncode == 0
            else f"broker reload failed ({batch.reload}): {r.stderr.strip()}"
        )
    elif bundles:
        echo("reload the broker if boards were added (systemctl reload mosquitto)")
    for i, e in enumerate(fleet.entries, 1):
        if e.id not in bundles:
            continue

        def say(msg: str, i: int = i, e: Entry = e) -> None:
            echo(f"[{i}/{n}] {e.id}: {msg}")

        t0 = time.monotonic()
        try:
            port = ports.next_port(
                batch.plug_timeout_s, lambda: say("plug in the board (waiting for its port)")
            )
            say(f"found {port.device} ({port.bridge})")
            o = pipeline.provision(
                bundles[e.id],
                port.device,
                enrolment=pipeline.Enrolment(batch.ledger, e.member),
                opts=batch.opts,
                say=say,
            )
            results[e.id] = Result(
                e,
                "ok",
                f"key {o.pubkey.hex()[:16]}..., first reading seq {o.first_seq}",
                pubkey=o.pubkey,
                first_seq=o.first_seq,
            )
            say(f"ok in {time.monotonic() - t0:.0f} s: unplug it and label it {e.id}")
        except BoardError as err:
            log.warning("board %s failed (%s): %s", e.id, err.kind, err)
            results[e.id] = Result(e, "failed", str(err), err.kind)
            say(f"FAILED ({err.kind}): {err}")
        except ProvisionError as err:
            log.warning("board %s failed: %s", e.id, err)
            results[e.id] = Result(e, "failed", str(err), "error")
            say(f"FAILED: {err}")
    out = [results[e.id] for e in fleet.entries]
    failed = Counter(r.kind for r in out if r.status == "failed")
    if failed:
        log.warning("fleet: %d boards failed: %s", sum(failed.values()), dict(failed))
    return out


def table(results: list[Result]) -> str:
    """The summary: one row per board, then the counts."""
    rows = [("board", "member", "result", "detail")]
    for r in results:
        rows.append(
            (
                r.entry.id,
                r.entry.member,
                r.status,
                r.detail if len(r.detail) <= 120 else r.detail[:117] + "...",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(row[i].ljust(widths[i]) for i in range(3)) + "  " + row[3] for row in rows]
    c = Counter(r.status for r in results)
    lines.append(f"{c['ok']} ok, {c['failed']} failed, {c['skipped']} skipped")
    return "\n".join(lines)
