"""Board registry operations: enrol a flashed board, rotate its key, replace or retire it; and keep a
running ingest's view of the registry in step with the ledger.

The ledger keeps every key a board has had (``board_keys``: valid_from/valid_to), so readings
signed before a rotation still verify with ``peergrid ledger verify``. A replaced board is
retired, not deleted: its readings and keys stay, and ingest refuses anything new from it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass

from coordinator.ledger import Ledger, quarantine
from coordinator.ledger.queries import provision as q
from coordinator.provision.errors import ProvisionError
from coordinator.transaction.ingest import Ingest
from protocol import crypto

log = logging.getLogger("peergrid.enrol")


@dataclass(frozen=True)
class Board:
    board_id: str
    member_id: str | None
    board_type: str
    status: str
    pubkey: bytes


def parse_pubkey(text: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise ProvisionError(f"public key {text!r} is not hex") from None
    if len(key) != 32:
        raise ProvisionError(f"an Ed25519 public key is 32 bytes (64 hex digits), got {len(key)}")
    return key


def find(ledger: Ledger, board_id: str) -> Board | None:
    for b in ledger.boards():
        if b.board_id == board_id:
            return Board(b.board_id, b.member_id, b.board_type, b.status, b.pubkey)
    return None


def _member(ledger: Ledger, member_id: str) -> None:
    if member_id not in {m.id for m in ledger.members()}:
        raise ProvisionError(f"no member {member_id!r}: add it with `peergrid members add` first")


def enrol(ledger: Ledger, board_id: str, member_id: str, pubkey: bytes, board_type: str, *, now: int) -> str:
    """Register a board's public key for a member and make it active; say what was done.

    A board that already asked to enrol (pending) is activated only if its key is the one the
    operator read from the board: a stranger who published first on that id is not accepted.
    """
    with ledger.transaction():  # the checks hold until the board is written
        return _enrol(ledger, board_id, member_id, pubkey, board_type, now=now)


def _enrol(ledger: Ledger, board_id: str, member_id: str, pubkey: bytes, board_type: str, *, now: int) -> str:
    _member(ledger, member_id)
    b = find(ledger, board_id)
    if b is None:
        ledger.add_board(board_id, board_type, pubkey, now=now, member_id=member_id, status="active")
        return f"board {board_id} enrolled for member {member_id}, key {pubkey.hex()[:16]}..."
    if b.pubkey != pubkey:
        raise ProvisionError(
            f"board {board_id} is registered with key {b.pubkey.hex()[:16]}..., not {pubkey.hex()[:16]}...: "
            "compare with the key the board printed, or use `peergrid board rotate-key`"
        )
    if b.status == "retired":
        raise ProvisionError(f"board {board_id} is retired; a replacement board needs a new id")
    if b.status == "active" and b.member_id == member_id:
        return f"board {board_id} is already enrolled for member {member_id}"
    if b.status == "active" and b.member_id is not None:
        # moving it would settle its readings not settled yet for the new member
        raise ProvisionError(
            f"board {board_id} is enrolled for member {b.member_id}, not {member_id}. To move the meter "
            f"to {member_id}: `peergrid board retire --board {board_id}` (what it metered stays "
            f"{b.member_id}'s), then bundle and flash it under a new id (`board flash --new-key`) and "
            f"enroll that id for {member_id}. New hardware for {b.member_id}: `peergrid board replace`"
        )
    ledger.activate_board(board_id, member_id)
    return f"board {board_id} enrolled for member {member_id}, key {pubkey.hex()[:16]}..."


def rotate_key(ledger: Ledger, board_id: str, pubkey: bytes, *, now: int) -> str:
    """Give a board a new key from ``now``; its old keys stay for verifying old readings."""
    with ledger.transaction():
        b = find(ledger, board_id)
        if b is None or b.status == "retired":
            raise ProvisionError(f"no enrolled board {board_id!r}")
        if any(k == pubkey for k, _, _ in ledger.keys_of(board_id)):
            raise ProvisionError(
                f"board {board_id} has had key {pubkey.hex()[:16]}... before: generate a new one"
            )
        ledger.rotate_key(board_id, pubkey, now=now)
    n = len(ledger.keys_of(board_id))
    return f"board {board_id}: new key {pubkey.hex()[:16]}... from {now}; {n} keys kept"


def replace(ledger: Ledger, old: str, new: str, pubkey: bytes, board_type: str | None, *, now: int) -> str:
    """A new board takes over an old one's member; the old one is retired with its history."""
    with ledger.transaction() as tx:  # the checks hold until the new board is in and the old retired
        b = find(ledger, old)
        if b is None or b.status != "active" or b.member_id is None:
            raise ProvisionError(f"no active board {old!r} to replace")
        if find(ledger, new) is not None:
            raise ProvisionError(f"board id {new!r} is already registered: a replacement needs a new id")
        if b.pubkey == pubkey:
            raise ProvisionError("the replacement board has the old board's key: it must generate its own")
        ledger.add_board(
            new, board_type or b.board_type, pubkey, now=now, member_id=b.member_id, status="active"
        )
        q.retire_board(tx, old)
    return f"board {new} replaces {old} for member {b.member_id}; {old} retired, its readings and keys kept"


def retire(ledger: Ledger, board_id: str) -> str:
    """Retire a board (a meter leaving the community or moving to another member): ingest refuses
    anything new from it; its readings and keys stay, and what it metered up to its last stored
    reading is still settled for its member. A retired id is never enrolled again."""
    with ledger.transaction() as tx:
        b = find(ledger, board_id)
        if b is None or b.status == "retired":
            raise ProvisionError(f"no active or pending board {board_id!r}")
        q.retire_board(tx, board_id)
    who = f" (member {b.member_id})" if b.member_id else ""
    return f"board {board_id}{who} retired; its readings and keys kept"


def sync(ingest: Ingest, ledger: Ledger) -> list[str]:
    """Bring a running ingest's boards in line with the ledger's active boards and current keys,
    and with the operator's decisions on quarantined readings.

    Boards enrolled, re-keyed or retired by the operator (another process) take effect without a
    restart; a board whose key is unchanged keeps its state (last sequence number, registers).
    """
    changes = []
    active = {b.board_id: b for b in ledger.boards("active")}
    last = None
    for board_id, b in active.items():
        st = ingest.boards.get(board_id)
        if st is not None and st.verifier.public == b.pubkey:
            continue
        if st is not None:
            st.verifier = crypto.Verifier(b.pubkey)
            st.key_from = b.key_from
            changes.append(f"{board_id}: new key")
            continue
        last = last if last is not None else ledger.last_readings()
        ingest.track(b, last.get(board_id))
        changes.append(f"{board_id}: enrolled")
    for board_id in [b for b in ingest.boards if b not in active]:
        if ingest.auto_enrol and find(ledger, board_id) is None:
            continue  # announced itself moments ago; the service is storing it
        del ingest.boards[board_id]
        changes.append(f"{board_id}: no longer active")
    if any(st.held for st in ingest.boards.values()):
        changes += ingest.decided(quarantine.decisions(ledger), ledger.last_readings())
    return changes


async def watch(ingest: Ingest, ledger: Ledger, stop: asyncio.Event, every_s: float = 2.0) -> None:
    """Run ``sync`` whenever another process changed the ledger (SQLite ``data_version``)."""
    seen = None
    while not stop.is_set():
        try:
            v = q.data_version(ledger)
            if v != seen:
                seen = v
                for c in sync(ingest, ledger):
                    log.info("registry: %s", c)
        except sqlite3.Error as e:  # the ledger is busy or gone: the ingest reports it; try again
            log.warning("registry check failed: %s", e)
        try:
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        except TimeoutError:
            pass
