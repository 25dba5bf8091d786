"""What dispatch takes from the OCPP chargers (coordinator/chargers) when it reads the ledger:

- a member whose bound charger is silent, offline after a session, or refused its last charging
  profile has an EV the coordinator cannot steer: its EV (a market EV's storage, an integrator
  home's EV) is left out of this interval's dispatch (logged, counted ``ev_charger_unavailable``)
  and comes back once the charger is heard from or accepts a profile again;
- a market EV whose board reports no state of charge gets the one its charger reported (the
  ``SoC`` measurand of its meter values), so a car behind an OCPP wallbox is dispatched too;
- an EV whose board reports no EV power gets its charger's newest ``Power.Active.Import``: the
  delivery check takes the EV's last power out of the house's measured forecast before it puts
  the new setpoint in (without it, a car behind a wallbox would be counted twice, and a limited
  EV held off every other interval).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from coordinator.ledger import Ledger
from coordinator.ledger.queries import chargers as q
from coordinator.members import Member
from protocol import messages

log = logging.getLogger("peergrid.dispatch")


def adjust(
    ledger: Ledger, members: list[Member], board_of: dict[str, str], latest: dict[str, messages.Reading]
) -> tuple[list[Member], dict[str, messages.Reading]]:
    """``members`` without the EVs of unavailable chargers, and ``latest`` with the chargers'
    states of charge where a market EV's board reports none, and their power where an EV's board
    reports none."""
    away = q.unavailable_members(ledger)
    soc = q.charger_soc(ledger)
    power = charger_power(ledger)
    if not away and not soc and not power:
        return members, latest
    out = []
    left = 0
    for m in members:
        p = m.prefs
        ev_storage = p.storage is not None and p.storage.is_ev
        if m.id in away and (ev_storage or p.ev is not None):
            log.warning("EV of %s left out of dispatch: %s", m.id, away[m.id])
            left += 1
            m = replace(m, prefs=replace(p, storage=None if ev_storage else p.storage, ev=None))
        elif (ev_storage or p.ev is not None) and m.id in board_of:
            board = board_of[m.id]
            r = latest.get(board)
            filled: dict[str, int] = {}
            if r is not None and r.bat_soc is None and ev_storage and m.id in soc:
                filled["bat_soc"] = soc[m.id]
            if r is not None and r.ev_p is None and m.id in power:
                filled["ev_p"] = power[m.id]
            if r is not None and filled:
                fields = {n: getattr(r, n) for n in messages.names(messages.Reading)}
                latest = {**latest, board: messages.Reading(**{**fields, **filled})}
        out.append(m)
    if left:
        ledger.count_rejections({"ev_charger_unavailable": left})
    return out, latest


def charger_power(ledger: Ledger) -> dict[str, int]:
    """Member -> the EV power (W) its chargers' newest meter values report (a charger whose newest
    sample has no power, e.g. the end of a session, is left out)."""
    out: dict[str, int] = {}
    for c in q.chargers(ledger):
        m = q.last_meter(ledger, c.charger_id)
        if m is not None and m[2] is not None:
            out[c.member_id] = out.get(c.member_id, 0) + m[2]
    return out


def charger_w_in(ledger: Ledger, start: int, length: int) -> dict[str, int]:
    """Member -> the mean EV power (W) its chargers metered over the interval ``start`` (from their
    energy registers): the EV's share of that interval's measured flow."""
    out: dict[str, int] = {}
    for c in q.chargers(ledger):
        wh = q.energy_in(ledger, c.charger_id, start, start + length)
        if wh is not None:
            out[c.member_id] = out.get(c.member_id, 0) + wh * 3600 // length
    return out
