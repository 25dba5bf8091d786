"""What one dispatch step reads from the ledger, read once and shared by its parts: the members,
their active boards and devices, each board's newest reading and its expected injection."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from coordinator.delivery import chargers
from coordinator.delivery.devices import Devices
from coordinator.ledger import Ledger
from coordinator.ledger.queries import dispatch as q
from coordinator.members import Member
from coordinator.site import Site
from protocol import messages

log = logging.getLogger("peergrid.dispatch")


@dataclass(frozen=True)
class Equipped:
    """A board's member and the devices its preferences describe."""

    member: Member
    devices: Devices


@dataclass(frozen=True)
class StepView:
    members: list[Member]
    board_of: dict[str, str]  # member -> its active board
    latest: dict[str, messages.Reading]  # board -> its newest stored reading
    expected: dict[str, int]  # board -> expected injection (W, + export)
    devices: dict[str, Equipped]  # board -> its member and devices (members with readable prefs)
    forecast: int | None = None  # the settled interval the forecast comes from (q.forecast_interval)
    # board -> its batteries' and EVs' mean power (W, + charging) over the forecast interval: what
    # leaves the measured forecast before the new setpoints enter it (their newest power is of
    # another interval when the orders go out ahead)
    device_w: dict[str, int] = field(default_factory=dict)

    def member_of(self, board: str) -> str:
        """The member of an active board ("" if it has none)."""
        e = self.devices.get(board)
        if e is not None:
            return e.member.id
        return next((m for m, b in self.board_of.items() if b == board), "")


def read(ledger: Ledger, site: Site, start: int) -> StepView:
    """The ledger as the step for interval ``start`` sees it. A member whose stored preferences
    cannot be read has no devices in it (logged and counted as ``bad_device_prefs``)."""
    board_of = {b.member_id: b.board_id for b in ledger.boards("active") if b.member_id}
    # the EVs of chargers that do not follow profiles are left out; chargers' states of charge
    members, latest = chargers.adjust(ledger, ledger.members(), board_of, ledger.latest_readings())
    forecast = q.forecast_interval(ledger, start, site.length)
    return StepView(
        members,
        board_of,
        latest,
        expected(ledger, site.length, start),
        _devices(ledger, members, board_of, site.tariff.feed_in),
        forecast,
        {} if forecast is None else device_w(ledger, board_of, forecast, site.length),
    )


def device_w(ledger: Ledger, board_of: dict[str, str], start: int, length: int) -> dict[str, int]:
    """Board -> the mean power (W, + charging) of its battery and EV over the interval ``start``:
    the mean of what its signed readings report (``bat_p`` + ``ev_p``), and for an EV whose board
    reports none, what its charger metered."""
    by_charger = chargers.charger_w_in(ledger, start, length)
    member_of = {b: m for m, b in board_of.items()}
    out: dict[str, int] = {}
    for board in board_of.values():
        total = n = 0
        ev_seen = False
        for r, _ in ledger.readings(board, start, start + length):
            total += (r.bat_p or 0) + (r.ev_p or 0)
            ev_seen = ev_seen or r.ev_p is not None
            n += 1
        w = total // n if n else 0
        if not ev_seen:
            w += by_charger.get(member_of.get(board, ""), 0)
        if n or w:
            out[board] = w
    return out


def expected(ledger: Ledger, length: int, start: int) -> dict[str, int]:
    """Expected injection per board (W, + export) for ``start``: the newest settled interval's
    (:func:`~coordinator.ledger.queries.dispatch.forecast_interval`: the previous one, or the one
    before when the orders go out ahead), without what the delivery check changed in it. A PV
    export limit or a shed load of that interval is added back (its ``delta_w`` taken out), or a
    curtailed interval would make the next one look safe and its orders go out unlimited;
    batteries and EVs leave the forecast by their reported power instead
    (:func:`coordinator.delivery.dispatch.targets.grid_input`)."""
    prev = q.forecast_interval(ledger, start, length)
    if prev is None:
        return {}
    out = {
        f.board_id: ((f.e_exp1 - f.e_exp0) - (f.e_imp1 - f.e_imp0)) * 36 // (10 * length)
        for f in q.board_flows(ledger, prev)
    }
    for b, d in q.curtailed_w(ledger, prev).items():
        if b in out:
            out[b] -= d
    return out


def _devices(
    ledger: Ledger, members: list[Member], board_of: dict[str, str], feed_in: int
) -> dict[str, Equipped]:
    out = {}
    bad = 0
    for m in members:
        if m.id not in board_of:
            continue
        if m.prefs_error is not None:  # one member's bad preferences must not stop the others
            log.warning("devices of %s left out of dispatch: %s", m.id, m.prefs_error)
            bad += 1
            continue
        out[board_of[m.id]] = Equipped(m, Devices.from_prefs(m.id, m.prefs, feed_in=feed_in))
    if bad:
        ledger.count_rejections({"bad_device_prefs": bad})
    return out
