"""SQLite ledger: registry, readings (append-only), market, dispatch and settlement records.

WAL mode with ``synchronous=NORMAL``: a committed transaction survives a kill -9 of the process
(the WAL is on disk before ``COMMIT`` returns); only an OS crash or power cut may lose the last
commits, which the broker then redelivers (MQTT acks are sent after commit). Readings are written
in batches (one transaction per batch) and stored without their signed body: the canonical
encoding lets the exact signed bytes be rebuilt from the fields, so only the signature is kept.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.errors import CoordinatorError
from coordinator.ledger.schema import MIGRATIONS
from coordinator.members import Member, MemberError, MemberPrefs
from protocol import messages

READING_COLS = (
    "board_id",
    "seq",
    "ts",
    "e_imp",
    "e_exp",
    "p",
    "u",
    "bat_soc",
    "bat_p",
    "ev_state",
    "ev_p",
    "flags",
    "sig",
)


# ``Ledger.record_acks``: what became of a board's acknowledgement of an order
ACK_RECORDED = "recorded"  # stored against the order
ACK_KEPT = "kept"  # a replayed refusal of an order already applied: the applied ack is kept
ACK_UNKNOWN = "unknown"  # no such order was sent to the board


class LedgerError(CoordinatorError):
    """The ledger refused an operation or found an inconsistency."""


@dataclass(frozen=True)
class BoardRecord:
    board_id: str
    member_id: str | None
    board_type: str
    status: str
    pubkey: bytes
    key_from: int = 0  # when the current key became valid (Unix s)


@dataclass(frozen=True)
class LastReading:
    seq: int
    ts: int
    e_imp: int
    e_exp: int


class Ledger:
    """``with Ledger.open(path) as ledger: ...``"""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self.path = path
        self._board_refs: dict[str, int] = {}  # committed board -> reading_rows.ref

    @classmethod
    def open(cls, path: str | Path) -> Ledger:
        p = str(path)
        conn = sqlite3.connect(p, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        ledger = cls(conn, p)
        ledger.migrate()
        return ledger

    def close(self) -> None:
        self._conn.close()

    def rollback(self) -> None:
        """Drop an open transaction, as a killed process loses it (the simulator's kill -9)."""
        if self._conn.in_transaction:
            self._conn.rollback()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema -------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        v: int = self._conn.execute("PRAGMA user_version").fetchone()[0]
        return v

    def migrate(self) -> int:
        """Run the migrations not yet applied; return the schema version."""
        v = self.version
        if v > len(MIGRATIONS):
            raise LedgerError(f"{self.path} has schema {v}, newer than this peergrid ({len(MIGRATIONS)})")
        for i in range(v, len(MIGRATIONS)):
            # one script, one transaction: a migration applies whole or not at all
            self._conn.executescript(f"BEGIN IMMEDIATE;{MIGRATIONS[i]}PRAGMA user_version={i + 1};COMMIT;")
        return self.version

    def transaction(self) -> _Tx:
        return _Tx(self._conn)

    # -- registry -----------------------------------------------------------------------------

    def add_member(
        self,
        member_id: str,
        name: str,
        role: str,
        *,
        now: int,
        tariff: str = "default",
        feeder: str | None = None,
        bus: str | None = None,
        prefs: MemberPrefs | None = None,
    ) -> None:
        """Add a member who joined at ``now`` (Unix s, kept as ``created``): its bills charge fixed
        charges and subscriptions from the local day it falls in (``billing.fee_days``). Its
        preferences are checked again as stored (:class:`~coordinator.members.MemberError` names
        the field that is wrong)."""
        if not messages.id_ok(member_id):
            raise LedgerError(f"member id {member_id!r} is not an identifier ([a-z0-9_-], 1-32)")
        stored = (prefs or MemberPrefs()).to_json()
        MemberPrefs.parse(member_id, stored)  # a MemberPrefs built by hand is checked too
        try:
            with self.transaction():
                self._conn.execute(
                    "INSERT INTO members (id, name, role, tariff, feeder, bus, prefs, created) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    (member_id, name, role, tariff, feeder, bus, json.dumps(stored), now),
                )
        except sqlite3.IntegrityError as e:
            raise LedgerError(f"cannot add member {member_id!r}: {e}") from None

    def leave_member(self, member_id: str, at: int) -> None:
        """Record that ``member_id`` left the community at ``at`` (Unix s): its bills charge no
        fixed charge or subscription after it. Its boards are not touched (retire them with
        ``peergrid board retire``). Refused for a member that already left or before it joined."""
        with self.transaction():
            q = "SELECT created, left_at FROM members WHERE id=?"
            row = self._conn.execute(q, (member_id,)).fetchone()
            if row is None:
                raise LedgerError(f"no member {member_id!r}")
            if row[1] is not None:
                raise LedgerError(f"member {member_id!r} already left (at {row[1]})")
            if at <= row[0]:
                raise LedgerError(f"member {member_id!r} joined at {row[0]}: it cannot leave at {at}")
            self._conn.execute("UPDATE members SET left_at=? WHERE id=?", (at, member_id))

    def members(self) -> list[Member]:
        """Every member, its preferences parsed. A member whose stored preferences are not valid
        (a ledger written before they were checked) gets empty ones and the reason in
        ``prefs_error``: it must not keep the others from being read."""
        q = "SELECT id, name, role, feeder, bus, created, left_at, tariff, prefs FROM members ORDER BY id"
        out = []
        for mid, name, role, feeder, bus, created, left_at, tariff, raw in self._conn.execute(q):
            error = None
            try:
                prefs = MemberPrefs.parse(mid, json.loads(raw))
            except MemberError as e:
                prefs, error = MemberPrefs(), str(e)
            except ValueError as e:  # not JSON
                prefs, error = MemberPrefs(), f"member {mid!r} prefs are not JSON: {e}"
            out.append(Member(mid, name, role, feeder, bus, created, left_at, prefs, tariff, error))
        return out

    def add_board(
        self,
        board_id: str,
        board_type: str,
        pubkey: bytes,
        *,
        now: int,
        member_id: str | None = None,
        status: str = "pending",
    ) -> None:
        if not messages.id_ok(board_id):
            raise LedgerError(f"board id {board_id!r} is not an identifier ([a-z0-9_-], 1-32)")
        if len(pubkey) != 32:
            raise LedgerError("an Ed25519 public key is 32 bytes")
        try:
            with self.transaction():
                self._conn.execute(
                    "INSERT INTO boards VALUES (?,?,?,?,?)", (board_id, member_id, board_type, status, now)
                )
                self._conn.execute("INSERT INTO board_keys VALUES (?,?,?,NULL)", (board_id, pubkey, now))
        except sqlite3.IntegrityError as e:
            raise LedgerError(f"cannot add board {board_id!r}: {e}") from None

    def activate_board(self, board_id: str, member_id: str) -> None:
        """Make a pending board active for ``member_id`` (a no-op if it is already active for
        that member). An active board is never moved to another member: its readings not settled
        yet would be settled for the new member."""
        with self.transaction():
            row = self._conn.execute(
                "SELECT status, member_id FROM boards WHERE id=?", (board_id,)
            ).fetchone()
            if row is None or row[0] == "retired":
                raise LedgerError(f"no enrollable board {board_id!r}")
            if row[0] == "active" and row[1] is not None and row[1] != member_id:
                raise LedgerError(
                    f"board {board_id} is enrolled for member {row[1]}, not {member_id}: a board moves "
                    "to another member under a new id (`peergrid board retire`, then enroll the new id)"
                )
            self._conn.execute(
                "UPDATE boards SET status='active', member_id=? WHERE id=?", (member_id, board_id)
            )

    def rotate_key(self, board_id: str, pubkey: bytes, *, now: int) -> None:
        """Make ``pubkey`` the board's key from ``now``; the old key stays for history/audit."""
        with self.transaction():
            self._conn.execute(
                "UPDATE board_keys SET valid_to=? WHERE board_id=? AND valid_to IS NULL", (now, board_id)
            )
            self._conn.execute("INSERT INTO board_keys VALUES (?,?,?,NULL)", (board_id, pubkey, now))

    def boards(self, status: str | None = None) -> list[BoardRecord]:
        q = (
            "SELECT b.id, b.member_id, b.board_type, b.status, k.pubkey, k.valid_from FROM boards b "
            "JOIN board_keys k ON k.board_id = b.id AND k.valid_to IS NULL"
        )
        args: tuple[Any, ...] = ()
        if status is not None:
            q += " WHERE b.status = ?"
            args = (status,)
        return [BoardRecord(*row) for row in self._conn.execute(q + " ORDER BY b.id", args)]

    def has_board(self, board_id: str) -> bool:
        """Whether the board is registered (in any status)."""
        return self._conn.execute("SELECT 1 FROM boards WHERE id = ?", (board_id,)).fetchone() is not None

    def keys_of(self, board_id: str) -> list[tuple[bytes, int, int | None]]:
        """Every key the board has had: (pubkey, valid_from, valid_to)."""
        return list(
            self._conn.execute(
                "SELECT pubkey, valid_from, valid_to FROM board_keys WHERE board_id=? ORDER BY valid_from",
                (board_id,),
            )
        )

    # -- readings -----------------------------------------------------------------------------

    def add_readings(self, batch: Iterable[tuple[messages.Reading, bytes]]) -> int:
        """Store (reading, signature) pairs in one transaction; duplicates are ignored.

        Returns how many rows were new. Idempotent: storing the same reading twice counts once.
        """
        items = list(batch)
        if not items:
            return 0
        with self.transaction():
            refs = self._refs_for({r.board for r, _ in items})
            rows = [
                (refs[r.board], r.seq, r.ts, r.e_imp, r.e_exp, r.p, r.u, _pack_ext(r), r.flags, bytes(sig))
                for r, sig in items
            ]
            # rowcount: rows this statement inserted (the span trigger's writes are not counted)
            n: int = self._conn.executemany(_INSERT_READING, rows).rowcount
        if not self._conn.in_transaction:  # committed: the refs are there for good
            self._board_refs.update(refs)
        return n

    def _refs_for(self, boards: set[str]) -> dict[str, int]:
        """Integer refs of these boards, adding the missing ones (inside the caller's transaction)."""
        known = self._board_refs
        out = {b: known[b] for b in boards if b in known}
        missing = sorted(boards - out.keys())
        if missing:
            add = "INSERT OR IGNORE INTO board_refs (board_id) VALUES (?)"
            self._conn.executemany(add, [(b,) for b in missing])
            for b in missing:
                out[b] = self._conn.execute("SELECT ref FROM board_refs WHERE board_id=?", (b,)).fetchone()[0]
        return out

    def _ref_of(self, board_id: str) -> int | None:
        ref = self._board_refs.get(board_id)
        if ref is None:
            row = self._conn.execute("SELECT ref FROM board_refs WHERE board_id=?", (board_id,)).fetchone()
            if row is None:
                return None
            ref = row[0]
            if not self._conn.in_transaction:
                self._board_refs[board_id] = ref
        return ref

    def last_readings(self) -> dict[str, LastReading]:
        """The newest stored reading of every board (ingest's state after a restart)."""
        q = f"SELECT b.board_id, r.seq, r.ts, r.e_imp, r.e_exp {_NEWEST_ROWS}"
        return {b: LastReading(s, t, i, e) for b, s, t, i, e in self._conn.execute(q)}

    def readings(
        self, board_id: str, since: int = 0, until: int = 2**62
    ) -> Iterator[tuple[messages.Reading, bytes]]:
        ref = self._ref_of(board_id)
        if ref is None:
            return
        # the sequence numbers of the readings stamped in the hours that [since, until) touches
        lo, hi = self._conn.execute(
            "SELECT min(seq_min), max(seq_max) FROM reading_spans WHERE ref=? AND hour BETWEEN ? AND ?",
            (ref, since // _SPAN_S, (until - 1) // _SPAN_S),
        ).fetchone()
        if lo is None:
            return
        cur = self._conn.execute(
            f"SELECT {_ROW_COLS} FROM reading_rows WHERE ref=? AND seq BETWEEN ? AND ? AND ts>=? AND ts<? "
            "ORDER BY seq",
            (ref, lo, hi, since, until),
        )
        for row in cur:
            yield _reading(board_id, row)

    def register_at(self, board_id: str, ts: int) -> LastReading | None:
        """The last reading of a board at or before ``ts`` (registers at an interval boundary)."""
        ref = self._ref_of(board_id)
        if ref is None:
            return None
        spans = self._conn.execute(
            "SELECT hour, seq_min, seq_max FROM reading_spans WHERE ref=? AND hour<=? ORDER BY hour DESC",
            (ref, ts // _SPAN_S),
        )
        # the newest hour holding a reading at or before ts holds the answer: earlier hours' are older
        for hour, lo, hi in spans:
            row = self._conn.execute(
                "SELECT seq, ts, e_imp, e_exp FROM reading_rows WHERE ref=? AND seq BETWEEN ? AND ? "
                "AND ts>=? AND ts<=? ORDER BY ts DESC, seq DESC LIMIT 1",
                (ref, lo, hi, hour * _SPAN_S, ts),
            ).fetchone()
            if row is not None:
                return LastReading(*row)
        return None

    def first_reading(self, board_id: str) -> LastReading | None:
        """The board's first stored reading (lowest sequence number), or None."""
        ref = self._ref_of(board_id)
        if ref is None:
            return None
        row = self._conn.execute(
            "SELECT seq, ts, e_imp, e_exp FROM reading_rows WHERE ref=? ORDER BY seq LIMIT 1", (ref,)
        ).fetchone()
        return None if row is None else LastReading(*row)

    def count_readings(self) -> int:
        n: int = self._conn.execute("SELECT count(*) FROM reading_rows").fetchone()[0]
        return n

    # -- orders to boards ---------------------------------------------------------------------

    def next_oseq(self, board_id: str) -> int:
        row = self._conn.execute(
            "SELECT max(oseq) FROM board_orders WHERE board_id=?", (board_id,)
        ).fetchone()
        return 1 if row[0] is None else int(row[0]) + 1

    def add_board_order(self, board_id: str, oseq: int, interval: int, frame: bytes) -> None:
        with self.transaction():
            self._conn.execute(
                "INSERT INTO board_orders (board_id, oseq, interval, frame) VALUES (?,?,?,?)",
                (board_id, oseq, interval, frame),
            )

    def record_ack(self, board_id: str, oseq: int, status: int, frame: bytes) -> bool:
        """Store a board's signed acknowledgement; False if no such order was sent."""
        return self.record_acks([(board_id, oseq, status, frame)])[0] != ACK_UNKNOWN

    def record_acks(self, acks: Iterable[tuple[str, int, int, bytes]]) -> list[str]:
        """``record_ack`` for many (board, oseq, status, frame) in one transaction; per ack
        ``ACK_RECORDED``, ``ACK_KEPT`` or ``ACK_UNKNOWN`` (no such order was sent).

        A refusal (``ST_REJECTED``) of an order the board already acknowledged as applied (or
        clamped) is the board refusing a redelivery of it as replayed (QoS 1 after a lost PUBACK):
        the board applies an order once, so it does not replace the signed applied ack
        (``ACK_KEPT``). A refusal followed by an applied ack (an order scheduled for later,
        redelivered before its window opened) is replaced by the applied ack."""
        update = (
            "UPDATE board_orders SET ack_status=?, ack_frame=? WHERE board_id=? AND oseq=? "
            f"AND NOT (? = {messages.ST_REJECTED} "
            f"AND coalesce(ack_status, -1) IN ({messages.ST_APPLIED}, {messages.ST_CLAMPED}))"
        )
        exists = "SELECT 1 FROM board_orders WHERE board_id=? AND oseq=?"
        out = []
        with self.transaction():
            for b, o, st, fr in acks:
                if self._conn.execute(update, (st, fr, b, o, st)).rowcount == 1:
                    out.append(ACK_RECORDED)
                elif self._conn.execute(exists, (b, o)).fetchone() is not None:
                    out.append(ACK_KEPT)
                else:
                    out.append(ACK_UNKNOWN)
        return out

    def latest_reading(self, board_id: str) -> messages.Reading | None:
        for r, _ in self.readings_desc(board_id, 1):
            return r
        return None

    def latest_readings(self) -> dict[str, messages.Reading]:
        """``latest_reading`` of every board that has one, in one query."""
        cols = ", ".join("r." + c for c in _ROW_COLS.split(", "))
        q = f"SELECT b.board_id, {cols} {_NEWEST_ROWS}"
        return {row[0]: _reading(row[0], row[1:])[0] for row in self._conn.execute(q)}

    def readings_desc(self, board_id: str, limit: int) -> Iterator[tuple[messages.Reading, bytes]]:
        ref = self._ref_of(board_id)
        if ref is None:
            return
        cur = self._conn.execute(
            f"SELECT {_ROW_COLS} FROM reading_rows WHERE ref=? ORDER BY seq DESC LIMIT ?", (ref, limit)
        )
        for row in cur:
            yield _reading(board_id, row)

    # -- rejections ---------------------------------------------------------------------------

    def count_rejections(self, counts: dict[str, int]) -> None:
        if not counts:
            return
        with self.transaction():
            self._conn.executemany(
                "INSERT INTO rejections VALUES (?, ?) "
                "ON CONFLICT(code) DO UPDATE SET count = count + excluded.count",
                list(counts.items()),
            )

    def rejections(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT code, count FROM rejections ORDER BY code"))

    def readings_by_seq(self, board_id: str, lo: int, hi: int) -> Iterator[tuple[messages.Reading, bytes]]:
        """A board's readings with ``lo <= seq <= hi`` (an audit's span), in sequence order."""
        ref = self._ref_of(board_id)
        if ref is None:
            return
        cur = self._conn.execute(
            f"SELECT {_ROW_COLS} FROM reading_rows WHERE ref=? AND seq>=? AND seq<=? ORDER BY seq",
            (ref, lo, hi),
        )
        for row in cur:
            yield _reading(board_id, row)


_SPAN_S = 3600  # reading_spans: one row per board and hour (schema migration 8)
_ROW_COLS = "seq, ts, e_imp, e_exp, p, u, ext, flags, sig"
# each board (b) with its newest reading row (r)
_NEWEST_ROWS = (
    "FROM board_refs b JOIN reading_rows r "
    "ON r.ref = b.ref AND r.seq = (SELECT max(seq) FROM reading_rows WHERE ref = b.ref)"
)
_INSERT_READING = "INSERT OR IGNORE INTO reading_rows VALUES (?,?,?,?,?,?,?,?,?,?)"
_NO_EXT = (None, None, None, None)
_W = messages.MAX_W + 1


def _pack_ext(r: messages.Reading) -> int | None:
    """The optional battery/EV fields as one integer (10 + 25 + 3 + 24 bits, 0 = absent); None
    when all four are absent. The ``readings`` view unpacks it the same way in SQL."""
    s, bp, es, ep = r.bat_soc, r.bat_p, r.ev_state, r.ev_p
    if s is None and bp is None and es is None and ep is None:
        return None
    return (
        (0 if s is None else s + 1)
        | ((0 if bp is None else bp + _W) << 10)
        | ((0 if es is None else es + 1) << 35)
        | ((0 if ep is None else ep + 1) << 38)
    )


def _unpack_ext(x: int | None) -> tuple[int | None, int | None, int | None, int | None]:
    if x is None:
        return _NO_EXT
    s, bp, es, ep = x & 1023, (x >> 10) & 33554431, (x >> 35) & 7, (x >> 38) & 16777215
    return (s - 1 if s else None, bp - _W if bp else None, es - 1 if es else None, ep - 1 if ep else None)


def _reading(board_id: str, row: tuple[Any, ...]) -> tuple[messages.Reading, bytes]:
    seq, ts, e_imp, e_exp, p, u, ext, flags, sig = row
    bat_soc, bat_p, ev_state, ev_p = _unpack_ext(ext)
    r = messages.Reading(
        board=board_id,
        seq=seq,
        ts=ts,
        e_imp=e_imp,
        e_exp=e_exp,
        p=p,
        u=u,
        bat_soc=bat_soc,
        bat_p=bat_p,
        ev_state=ev_state,
        ev_p=ev_p,
        flags=flags,
    )
    return r, sig


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error. Nested use joins the outer transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.outer = False

    def __enter__(self) -> sqlite3.Connection:
        self.outer = not self._conn.in_transaction
        if self.outer:
            self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if not self.outer:
            return
        if exc_type is None:
            self._conn.execute("COMMIT")
        else:
            self._conn.execute("ROLLBACK")
