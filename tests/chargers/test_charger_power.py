"""Dispatch sees a car behind an OCPP wallbox: its member's board reports neither the car's state
of charge nor its power, so both come from the charger's newest meter values; the delivery check
then takes the car's last power out of the house's measured forecast before it adds the new
setpoint (else the car counts twice and a limited EV is held off every other interval)."""

from __future__ import annotations

from pathlib import Path

from coordinator.chargers.service import bind
from coordinator.delivery import chargers
from coordinator.ledger import Ledger
from coordinator.ledger.queries import chargers as q
from coordinator.members import MemberPrefs
from protocol import messages
from tests.chargers.test_ocpp import EV, T0


def reading(board: str, ev_p: int | None = None, bat_soc: int | None = None) -> messages.Reading:
    return messages.Reading(
        board=board, seq=1, ts=T0, e_imp=0, e_exp=0, p=3_300, u=230_000,
        bat_soc=bat_soc, bat_p=None, ev_state=None, ev_p=ev_p, flags=0,
    )  # fmt: skip


def test_the_chargers_power_and_state_of_charge_fill_what_the_board_does_not_report(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as led:
        led.add_member("alice", "Alice", "ev", now=T0 - 86_400, prefs=MemberPrefs.parse("alice", EV))
        led.add_member("bob", "Bob", "ev", now=T0 - 86_400, prefs=MemberPrefs.parse("bob", EV))
        for m in ("alice", "bob"):
            led.add_board(f"b-{m}", "virtual", bytes(32), now=T0 - 86_400, member_id=m, status="active")
        bind(led, "CP1", "alice", T0)
        bind(led, "CP2", "bob", T0)
        q.add_meter(led, "CP1", T0 + 10, 1_000, 2_500, 800, 1)
        q.add_meter(led, "CP2", T0 + 10, 2_000, 7_000, 500, 2)
        q.add_meter(led, "CP2", T0 + 20, 2_020, None, None, None)  # its session ended: no power now
        members = led.members()
        board_of = {"alice": "b-alice", "bob": "b-bob"}
        latest = {"b-alice": reading("b-alice"), "b-bob": reading("b-bob", ev_p=1_000, bat_soc=100)}
        assert chargers.charger_power(led) == {"alice": 2_500}
        out, got = chargers.adjust(led, members, board_of, latest)
    assert [m.id for m in out] == ["alice", "bob"]
    assert (got["b-alice"].ev_p, got["b-alice"].bat_soc) == (2_500, 800)
    assert got["b-bob"] == latest["b-bob"]  # what the board reports stands
