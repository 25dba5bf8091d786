"""What dispatch takes from the OCPP chargers (coordinator/chargers) when it reads the ledger:

- a member whose bound charger is silent, offline after a session, or refused its last charging
  profile has an EV the coordinator cannot steer: its EV (a market EV's storage, an integrator
  home's EV) is left out of this interval's dispatch (logged, counted ``ev_charger_unavailable``)
  and comes back once the charger is heard from or accepts a profile again;
- a market EV whose board reports no state of charge gets the one its charger reported (the
  ``SoC`` measurand of its meter values), so a car behind an OCPP wallbox is dispatched too.
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
    states of charge where a market EV's board reports none."""
    away = q.unavailable_members(ledger)
    soc = q.charger_soc(ledger)
    if not away and not soc:
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
        elif ev_storage and m.id in soc and m.id in board_of:
            board = board_of[m.id]
            r = latest.get(board)
            if r is not None and r.bat_soc is None:
                fields = {n: getattr(r, n) for n in messages.names(messages.Reading)}
                latest = {**latest, board: messages.Reading(**{**fields, "bat_soc": soc[m.id]})}
        out.append(m)
    if left:
        ledger.count_rejections({"ev_charger_unavailable": left})
    return out, latest
