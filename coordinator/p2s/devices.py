"""A member's devices and preferences set or changed in a running coordinator.

:func:`change` merges the given keys into the member's newest preferences (a key given as None is
removed; ``replace`` starts from nothing), checks the result with the typed member model
(:meth:`coordinator.members.MemberPrefs.parse`, whose error names member and field) and against the
member's board (no device may draw or feed more than the board's connection carries; an EV must be
able to leave after the change is in force and charge what it needs in its window), and records it
(:mod:`coordinator.ledger.member_changes`): in force from the next interval, with who made it and
when. Nothing is stored when a check fails.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from coordinator.ledger import Ledger, member_changes
from coordinator.ledger.member_changes import MemberChange
from coordinator.ledger.rules import DEFAULT_LIMIT_W
from coordinator.members import DAY, MemberError, MemberPrefs, hhmm
from coordinator.p2s.errors import BadDevice, UnknownMember

Limits = Callable[[str], tuple[int, int]]  # board type -> (import W, export W)


def next_interval(now: int, length: int) -> int:
    """The start of the first interval that begins after ``now``."""
    return now - now % length + length


def connection(ledger: Ledger, member_id: str, limits: Limits | None) -> tuple[int, int]:
    """What the member's active boards' connections carry (import W, export W); the default bound
    without a board or a board file."""
    types = [b.board_type for b in ledger.boards("active") if b.member_id == member_id]
    if not types or limits is None:
        return DEFAULT_LIMIT_W, DEFAULT_LIMIT_W
    imp = exp = 0
    for t in types:
        i, e = limits(t)
        imp, exp = imp + i, exp + e
    return imp, exp


def check(member_id: str, prefs: MemberPrefs, conn: tuple[int, int], effective: int, length: int) -> None:
    """Refuse device powers beyond the member's connection and EV windows that cannot work."""
    imp, exp = conn

    def over(field: str, w: int, limit: int, what: str) -> None:
        if w > limit:
            raise BadDevice(
                f"member {member_id!r} {field} {w} W is above what its board's connection carries "
                f"({what} {limit} W)"
            )

    st = prefs.storage
    if st is not None:
        over("storage.max_charge_w", st.max_charge_w, imp, "import")
        over("storage.max_discharge_w", st.max_discharge_w, exp, "export")
    if prefs.ev is not None:
        ev = prefs.ev
        over("ev.max_charge_w", ev.max_charge_w, imp, "import")
        window = (ev.departure - ev.arrive) % DAY or DAY
        most = ev.max_charge_w * window * 10 // 36
        if ev.need_mwh > most:
            raise BadDevice(
                f"member {member_id!r} ev.need_mwh {ev.need_mwh} cannot be charged between "
                f"{hhmm(ev.arrive)} and {hhmm(ev.departure)} at {ev.max_charge_w} W (at most {most} mWh)"
            )
    if prefs.deferrable is not None:
        over("deferrable.w", prefs.deferrable.w, imp, "import")
    _departure(member_id, prefs, effective, length)


def _departure(member_id: str, prefs: MemberPrefs, effective: int, length: int) -> None:
    """A market EV whose departure falls before the end of the first interval the change is in
    force in would leave before it could be charged: its departure is as good as past."""
    st = prefs.storage
    if st is None or not st.is_ev or st.departure is None:
        return
    tod = effective % DAY
    ahead = (st.departure - tod) % DAY
    if ahead < length:
        raise BadDevice(
            f"member {member_id!r} storage.departure {hhmm(st.departure)} is when the change takes "
            f"effect ({hhmm(tod)} UTC): the EV would leave before it could charge; give a later departure"
        )


def change(
    ledger: Ledger,
    member_id: str,
    given: Mapping[str, Any],
    *,
    by: str,
    now: int,
    length: int,
    limits: Limits | None = None,
    replace: bool = False,
) -> MemberChange:
    """Check and record a change of ``member_id``'s preferences: the keys of ``given`` merged into
    its newest ones (None removes a key; ``replace``: ``given`` is the whole of them). In force from
    the next interval."""
    if not isinstance(given, Mapping):
        raise BadDevice(f"member {member_id!r}: the change must be a table (JSON object), got {given!r}")
    known = {m.id: m for m in ledger.members()}
    if member_id not in known:
        raise UnknownMember(f"no member {member_id!r}")
    if known[member_id].left_at is not None:
        raise UnknownMember(f"member {member_id!r} left the community: its devices cannot be changed")
    base: dict[str, Any] = {} if replace else dict(member_changes.current(ledger, member_id))
    for k, v in given.items():
        if v is None:
            base.pop(k, None)
        else:
            base[k] = v
    try:
        prefs = MemberPrefs.parse(member_id, base)
    except MemberError as e:
        raise BadDevice(str(e)) from None
    effective = next_interval(now, length)
    check(member_id, prefs, connection(ledger, member_id, limits), effective, length)
    return member_changes.record(ledger, member_id, prefs, by=by, now=now, effective=effective)


def devices(ledger: Ledger) -> list[dict[str, Any]]:
    """Every member's devices in force and any change still pending, as JSON."""
    changes = reversed(member_changes.history(ledger, limit=10_000))  # oldest first: the newest wins
    pending = {c.member_id: c for c in changes if c.applied_at is None}
    out = []
    for m in ledger.members():
        p = pending.get(m.id)
        out.append(
            {
                "id": m.id,
                "name": m.name,
                "feeder": m.feeder,
                "bus": m.bus,
                "prefs": m.prefs.to_json(),
                "prefs_error": m.prefs_error,
                "pending": None if p is None else {"prefs": p.as_dict()["prefs"], "effective": p.effective},
            }
        )
    return out
