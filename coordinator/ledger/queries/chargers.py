"""The OCPP central system's queries (:mod:`coordinator.chargers`): which charger is bound to which
member, what each charger reported (sessions, meter values), the charging profiles sent and their
answers, the cross-check of a charger's energy against its member's board, and what dispatch
reads of them (an EV whose charger is silent or refused its profile is left out of the storage
market at the next interval).

Charger values are never billed: settlement reads only the boards' signed readings.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.ledger.store import Ledger

ONLINE = "online"
SILENT = "silent"  # connected once, nothing heard for longer than the silence limit
REFUSED = "refused"  # refused (or did not answer) the last charging profile
UNSEEN = "unseen"  # bound, never connected
OFFLINE = "offline"  # closed its connection
STATES = (ONLINE, SILENT, REFUSED, UNSEEN, OFFLINE)


@dataclass(frozen=True)
class Charger:
    charger_id: str
    member_id: str
    bound_at: int
    state: str
    reason: str | None
    last_seen: int | None
    protocol: str | None
    vendor: str | None
    model: str | None
    password_set: int | None = None  # when its password was set (None: no password, refused)


_COLS = "id, member_id, bound_at, state, reason, last_seen, protocol, vendor, model, password_set"


def bind(ledger: Ledger, charger_id: str, member_id: str, now: int, password_hash: str | None = None) -> None:
    """Bind a charger to a member (a charger bound again moves to the new member), with its
    password's hash if given (else it keeps the one it had, if any)."""
    with ledger.transaction() as tx:
        tx.execute(
            "INSERT INTO chargers (id, member_id, bound_at) VALUES (?,?,?)"
            " ON CONFLICT(id) DO UPDATE SET member_id=excluded.member_id, bound_at=excluded.bound_at",
            (charger_id, member_id, now),
        )
        if password_hash is not None:
            tx.execute(
                "UPDATE chargers SET password_hash=?, password_set=? WHERE id=?",
                (password_hash, now, charger_id),
            )


def set_password(ledger: Ledger, charger_id: str, password_hash: str, now: int) -> bool:
    """Store a bound charger's password hash (replacing the one before); False if not bound."""
    with ledger.transaction() as tx:
        return (
            tx.execute(
                "UPDATE chargers SET password_hash=?, password_set=? WHERE id=?",
                (password_hash, now, charger_id),
            ).rowcount
            > 0
        )


def password_hash(ledger: Ledger, charger_id: str) -> str | None:
    """The charger's password hash; None if it has none (or is not bound)."""
    row = ledger._conn.execute("SELECT password_hash FROM chargers WHERE id=?", (charger_id,)).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def credentials(ledger: Ledger) -> dict[str, tuple[str, str | None]]:
    """Every bound charger's member and password hash: what the running central system compares
    its connections with."""
    rows = ledger._conn.execute("SELECT id, member_id, password_hash FROM chargers")
    return {str(r[0]): (str(r[1]), None if r[2] is None else str(r[2])) for r in rows}


def unbind(ledger: Ledger, charger_id: str) -> bool:
    """Forget a charger's binding (its reports stay); False if it was not bound."""
    with ledger.transaction() as tx:
        return tx.execute("DELETE FROM chargers WHERE id=?", (charger_id,)).rowcount > 0


def member_exists(ledger: Ledger, member_id: str) -> bool:
    return ledger._conn.execute("SELECT 1 FROM members WHERE id=?", (member_id,)).fetchone() is not None


def charger(ledger: Ledger, charger_id: str) -> Charger | None:
    row = ledger._conn.execute(f"SELECT {_COLS} FROM chargers WHERE id=?", (charger_id,)).fetchone()
    return None if row is None else Charger(*row)


def chargers(ledger: Ledger) -> list[Charger]:
    return [Charger(*row) for row in ledger._conn.execute(f"SELECT {_COLS} FROM chargers ORDER BY id")]


def set_state(
    ledger: Ledger, charger_id: str, state: str, reason: str | None = None, seen: int | None = None
) -> None:
    """A charger's state (and, with ``seen``, when it was last heard from)."""
    with ledger.transaction() as tx:
        tx.execute(
            "UPDATE chargers SET state=?, reason=?, last_seen=coalesce(?, last_seen) WHERE id=?",
            (state, reason, seen, charger_id),
        )


def seen(ledger: Ledger, charger_id: str, now: int) -> None:
    with ledger.transaction() as tx:
        tx.execute("UPDATE chargers SET last_seen=? WHERE id=?", (now, charger_id))


def booted(ledger: Ledger, charger_id: str, protocol: str, vendor: str, model: str, now: int) -> None:
    with ledger.transaction() as tx:
        tx.execute(
            "UPDATE chargers SET protocol=?, vendor=?, model=?, last_seen=? WHERE id=?",
            (protocol, vendor, model, now, charger_id),
        )


def start_session(
    ledger: Ledger, charger_id: str, connector: int, id_tag: str, start: int, meter_start_wh: int
) -> int:
    """A new charging session: its transaction id (one sequence per charger, from 1)."""
    with ledger.transaction() as tx:
        (n,) = tx.execute(
            "SELECT coalesce(max(tx_id), 0) + 1 FROM charger_sessions WHERE charger_id=?", (charger_id,)
        ).fetchone()
        tx.execute(
            "INSERT INTO charger_sessions (charger_id, tx_id, connector, id_tag, start, meter_start)"
            " VALUES (?,?,?,?,?,?)",
            (charger_id, n, connector, id_tag, start, meter_start_wh),
        )
    return int(n)


def stop_session(
    ledger: Ledger, charger_id: str, tx_id: int, stop: int, meter_stop_wh: int, reason: str
) -> bool:
    """End a session; False if the charger has no such open session."""
    with ledger.transaction() as tx:
        cur = tx.execute(
            "UPDATE charger_sessions SET stop=?, meter_stop=?, reason=?"
            " WHERE charger_id=? AND tx_id=? AND stop IS NULL",
            (stop, meter_stop_wh, reason, charger_id, tx_id),
        )
        return cur.rowcount > 0


def open_session(ledger: Ledger, charger_id: str) -> tuple[int, int, int] | None:
    """The charger's running session: (transaction id, start, meter at start in Wh), or None."""
    row = ledger._conn.execute(
        "SELECT tx_id, start, meter_start FROM charger_sessions WHERE charger_id=? AND stop IS NULL"
        " ORDER BY tx_id DESC LIMIT 1",
        (charger_id,),
    ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]))


def sessions(
    ledger: Ledger, charger_id: str
) -> list[tuple[int, int, int, int | None, int | None, str | None]]:
    """(tx id, start, meter start Wh, stop, meter stop Wh, reason) of each session, oldest first."""
    q = (
        "SELECT tx_id, start, meter_start, stop, meter_stop, reason FROM charger_sessions"
        " WHERE charger_id=? ORDER BY tx_id"
    )
    return [tuple(r) for r in ledger._conn.execute(q, (charger_id,))]


def add_meter(
    ledger: Ledger,
    charger_id: str,
    ts: int,
    energy_wh: int | None,
    power_w: int | None,
    soc: int | None,
    tx_id: int | None,
) -> None:
    """One meter sample (the newest at the same second replaces an earlier one)."""
    with ledger.transaction() as tx:
        tx.execute(
            "INSERT OR REPLACE INTO charger_meter (charger_id, ts, energy_wh, power_w, soc, tx_id)"
            " VALUES (?,?,?,?,?,?)",
            (charger_id, ts, energy_wh, power_w, soc, tx_id),
        )


def last_meter(ledger: Ledger, charger_id: str) -> tuple[int, int | None, int | None, int | None] | None:
    """The newest sample: (ts, energy Wh, power W, SoC per-mille)."""
    row = ledger._conn.execute(
        "SELECT ts, energy_wh, power_w, soc FROM charger_meter WHERE charger_id=? ORDER BY ts DESC LIMIT 1",
        (charger_id,),
    ).fetchone()
    return None if row is None else (int(row[0]), row[1], row[2], row[3])


def last_energy_wh(ledger: Ledger, charger_id: str) -> int | None:
    """The charger's newest energy register (Wh)."""
    row = ledger._conn.execute(
        "SELECT energy_wh FROM charger_meter WHERE charger_id=? AND energy_wh IS NOT NULL"
        " ORDER BY ts DESC LIMIT 1",
        (charger_id,),
    ).fetchone()
    return None if row is None else int(row[0])


def energy_between(ledger: Ledger, charger_id: str, start: int, end: int) -> int | None:
    """The charger's energy register advance (Wh) from its last sample at or before ``start`` to its
    last at or before ``end``; None without a sample on both sides."""
    q = (
        "SELECT energy_wh FROM charger_meter WHERE charger_id=? AND ts<=? AND energy_wh IS NOT NULL"
        " ORDER BY ts DESC LIMIT 1"
    )
    a = ledger._conn.execute(q, (charger_id, start)).fetchone()
    b = ledger._conn.execute(q, (charger_id, end)).fetchone()
    if a is None or b is None:
        return None
    return int(b[0]) - int(a[0])


def add_profile(
    ledger: Ledger, charger_id: str, interval: int, limit_ma: int, kind: str, status: str, sent: int
) -> None:
    """A charging profile sent for ``interval`` (the limit per phase, mA) and the charger's answer."""
    with ledger.transaction() as tx:
        tx.execute(
            "INSERT OR REPLACE INTO charger_profiles (charger_id, interval, limit_ma, kind, status, sent)"
            " VALUES (?,?,?,?,?,?)",
            (charger_id, interval, limit_ma, kind, status, sent),
        )


def profiles(ledger: Ledger, charger_id: str) -> list[tuple[int, int, str, str]]:
    """(interval, limit mA, kind, status) of each profile sent, oldest first."""
    q = "SELECT interval, limit_ma, kind, status FROM charger_profiles WHERE charger_id=? ORDER BY interval"
    return [(int(a), int(b), str(c), str(d)) for a, b, c, d in ledger._conn.execute(q, (charger_id,))]


def last_profile(ledger: Ledger, charger_id: str) -> tuple[int, int, str, str, int] | None:
    """The newest profile sent: (interval, limit mA, kind, status, sent), or None."""
    row = ledger._conn.execute(
        "SELECT interval, limit_ma, kind, status, sent FROM charger_profiles WHERE charger_id=?"
        " ORDER BY sent DESC, interval DESC LIMIT 1",
        (charger_id,),
    ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]), str(row[2]), str(row[3]), int(row[4]))


def board_order(ledger: Ledger, board_id: str, interval: int) -> bytes | None:
    """The newest signed order sent to a board for ``interval``."""
    row = ledger._conn.execute(
        "SELECT frame FROM board_orders WHERE board_id=? AND interval=? ORDER BY oseq DESC LIMIT 1",
        (board_id, interval),
    ).fetchone()
    return None if row is None else bytes(row[0])


def board_of(ledger: Ledger, member_id: str) -> str | None:
    """The member's active board."""
    row = ledger._conn.execute(
        "SELECT id FROM boards WHERE member_id=? AND status='active' ORDER BY created DESC LIMIT 1",
        (member_id,),
    ).fetchone()
    return None if row is None else str(row[0])


def board_import(ledger: Ledger, board_id: str, interval: int) -> int | None:
    """The board's settled import (mWh) in ``interval``, from its signed readings; None if not
    settled."""
    row = ledger._conn.execute(
        "SELECT e_imp1 - e_imp0 FROM board_deliveries WHERE board_id=? AND interval=?", (board_id, interval)
    ).fetchone()
    return None if row is None else int(row[0])


def add_check(
    ledger: Ledger, interval: int, charger_id: str, charger_mwh: int, board_mwh: int, ok: bool
) -> None:
    with ledger.transaction() as tx:
        tx.execute(
            "INSERT OR REPLACE INTO charger_checks (interval, charger_id, charger_mwh, board_mwh, ok)"
            " VALUES (?,?,?,?,?)",
            (interval, charger_id, charger_mwh, board_mwh, int(ok)),
        )


def checks(ledger: Ledger, charger_id: str) -> list[tuple[int, int, int, bool]]:
    """(interval, charger mWh, board mWh, agreed) of each cross-check, oldest first."""
    q = "SELECT interval, charger_mwh, board_mwh, ok FROM charger_checks WHERE charger_id=? ORDER BY interval"
    return [(int(a), int(b), int(c), bool(d)) for a, b, c, d in ledger._conn.execute(q, (charger_id,))]


def recent_checks(ledger: Ledger, charger_id: str, n: int) -> list[tuple[int, int, int, bool]]:
    """The newest ``n`` cross-checks (the last settled intervals checked), oldest first: as
    :func:`checks`."""
    q = (
        "SELECT interval, charger_mwh, board_mwh, ok FROM charger_checks WHERE charger_id=?"
        " ORDER BY interval DESC LIMIT ?"
    )
    rows = ledger._conn.execute(q, (charger_id, n)).fetchall()
    return [(int(a), int(b), int(c), bool(d)) for a, b, c, d in reversed(rows)]


def checked(ledger: Ledger, charger_id: str, interval: int) -> bool:
    q = "SELECT 1 FROM charger_checks WHERE charger_id=? AND interval=?"
    return ledger._conn.execute(q, (charger_id, interval)).fetchone() is not None


def unavailable_members(ledger: Ledger) -> dict[str, str]:
    """Member -> why its EV is not controllable now: its bound charger is silent, offline or refused
    its last profile (what dispatch leaves out)."""
    q = "SELECT member_id, id, state, coalesce(reason, '') FROM chargers WHERE state IN (?, ?, ?)"
    rows = ledger._conn.execute(q, (SILENT, REFUSED, OFFLINE))
    return {m: f"charger {c} {s}: {r}".rstrip(": ") for m, c, s, r in rows}


def charger_soc(ledger: Ledger) -> dict[str, int]:
    """Member -> its EV's state of charge (per-mille) as its charger last reported it (chargers
    that report one, during a running session)."""
    q = (
        "SELECT c.member_id, m.soc FROM chargers c JOIN charger_meter m ON m.charger_id = c.id"
        " WHERE m.soc IS NOT NULL AND m.ts = (SELECT max(ts) FROM charger_meter WHERE charger_id = c.id"
        " AND soc IS NOT NULL)"
    )
    return {str(m): int(s) for m, s in ledger._conn.execute(q)}


def health(ledger: Ledger) -> dict[str, object]:
    """Chargers per state, and each one that is not online with its reason (for ``/healthz``)."""
    out: dict[str, object] = {s: 0 for s in STATES}
    bad: dict[str, str] = {}
    for c in chargers(ledger):
        out[c.state] = int(out.get(c.state, 0) or 0) + 1  # type: ignore[call-overload]
        if c.state in (SILENT, REFUSED):
            bad[c.charger_id] = f"{c.state}: {c.reason or ''}".rstrip(": ")
    out["problems"] = bad
    q = "SELECT count(*) FROM charger_checks WHERE ok=0"
    out["disagreements"] = ledger._conn.execute(q).fetchone()[0]
    return out


def energy_in(ledger: Ledger, charger_id: str, start: int, end: int) -> int | None:
    """Wh the charger's energy register advanced over ``[start, end)`` (its first and last samples
    with an energy value in that span); None with fewer than two."""
    row = ledger._conn.execute(
        "SELECT min(ts), max(ts) FROM charger_meter WHERE charger_id=? AND energy_wh IS NOT NULL"
        " AND ts>=? AND ts<?",
        (charger_id, start, end),
    ).fetchone()
    if row is None or row[0] is None or row[0] == row[1]:
        return None
    q = "SELECT energy_wh FROM charger_meter WHERE charger_id=? AND ts=?"
    e0 = ledger._conn.execute(q, (charger_id, row[0])).fetchone()[0]
    e1 = ledger._conn.execute(q, (charger_id, row[1])).fetchone()[0]
    return max(0, int(e1) - int(e0))
