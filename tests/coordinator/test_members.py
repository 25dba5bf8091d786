"""Members' preferences: every key typed and checked, errors naming the member and the field, the
stored JSON given back, and a member whose stored preferences are bad left out of dispatch alone."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from coordinator.delivery.dispatch import Dispatch
from coordinator.errors import CoordinatorError
from coordinator.ledger import Ledger
from coordinator.market import Preferences, Tariff
from coordinator.members import (
    DeferrablePrefs,
    EvPrefs,
    FlexPrefs,
    IntegratorPrefs,
    Member,
    MemberError,
    MemberPrefs,
    PvPrefs,
    StoragePrefs,
)
from coordinator.site import Site
from coordinator.transaction.settlement import settle
from protocol import crypto
from sim.board import VirtualBoard
from tests.coordinator.readings import store

START = 1_750_000_000 - 1_750_000_000 % 900
TARIFF = Tariff(4_000, 20_750, 6_000, 3_000)
BAT = {"capacity_mwh": 10_000_000, "max_charge_w": 3_000, "max_discharge_w": 3_000, "min_soc": 100}
EV = {"kind": "ev", "capacity_mwh": 60_000_000, "max_charge_w": 11_000, "phases": 3, "target_soc": 800}
HOME_EV = {
    "max_charge_w": 11_000,
    "phases": 3,
    "need_mwh": 20_000_000,
    "arrive": "17:00",
    "departure": "06:30",
}
EVERYTHING = {
    "min_sell": 3_000,
    "max_buy": -2_000,
    "subscription_per_day": 5_000_000_000,
    "storage": BAT,
    "ev": HOME_EV,
    "deferrable": {"w": 3_000, "relay": 7, "hours": [22, 6]},
    "pv": {"kwp": 8},
    "flex": {"pv": 4_000, "battery": 1_000, "ev": 800, "load": 2_500, "price": 15_000},
    "integrator": {"horizon": 8},
}


def test_every_key_is_read_into_its_typed_part() -> None:
    p = MemberPrefs.parse("alice", EVERYTHING)
    assert p == MemberPrefs(
        min_sell=3_000,
        max_buy=-2_000,
        subscription_per_day=5_000_000_000,
        storage=StoragePrefs(10_000_000, 3_000, 3_000, min_soc=100),
        ev=EvPrefs(11_000, 3, 20_000_000, arrive=17 * 3600, departure=6 * 3600 + 1800),
        deferrable=DeferrablePrefs(3_000, 7, (22, 6)),
        pv=PvPrefs(8),
        flex=FlexPrefs(4_000, 1_000, 800, 2_500, 15_000),
        integrator=IntegratorPrefs(8),
    )
    ev = MemberPrefs.parse("van", {"storage": EV | {"departure": "7:05"}}).storage
    assert ev == StoragePrefs(
        60_000_000, 11_000, kind="ev", phases=3, target_soc=800, departure=7 * 3600 + 300
    )
    assert ev.is_ev and MemberPrefs.parse("bo", {}) == MemberPrefs()


@pytest.mark.parametrize(
    "data",
    [
        EVERYTHING,
        {},
        {"storage": EV | {"departure": "07:00"}, "min_sell": 0},
        {"integrator": {}, "ev": {"max_charge_w": 7_400}},
        {"deferrable": {"w": 2_000}, "flex": {"price": 9_000}},
    ],
)
def test_the_stored_object_round_trips(data: dict[str, Any]) -> None:
    p = MemberPrefs.parse("alice", data)
    assert p.to_json() == data
    assert MemberPrefs.parse("alice", json.loads(json.dumps(p.to_json()))) == p


def test_defaults_are_left_out_of_the_stored_object() -> None:
    p = MemberPrefs.parse("a", {"integrator": {"horizon": 16}, "storage": BAT | {"min_soc": 0}})
    assert p.to_json() == {"integrator": {}, "storage": {k: v for k, v in BAT.items() if k != "min_soc"}}
    assert MemberPrefs.parse("a", p.to_json()) == p


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"storage": BAT | {"capacity_mwh": -5}}, "storage.capacity_mwh must be an integer > 0, got -5"),
        (
            {"storage": BAT | {"capacity_mwh": "lots"}},
            "storage.capacity_mwh must be an integer > 0, got 'lots'",
        ),
        ({"storage": BAT | {"capacity_mwh": 10**13}}, r"storage.capacity_mwh must be an integer <= \d+"),
        ({"storage": {"max_charge_w": 1}}, "storage.capacity_mwh is missing"),
        ({"storage": BAT | {"max_charge_w": 1.5}}, "storage.max_charge_w must be an integer >= 0, got 1.5"),
        ({"storage": BAT | {"max_discharge_w": -1}}, "storage.max_discharge_w must be an integer >= 0"),
        ({"storage": BAT | {"min_soc": 1001}}, r"storage.min_soc must be an integer in 0\.\.1000, got 1001"),
        ({"storage": EV | {"target_soc": -1}}, r"storage.target_soc must be an integer in 0\.\.1000"),
        ({"storage": EV | {"phases": 4}}, r"storage.phases must be an integer in 1\.\.3, got 4"),
        ({"storage": EV | {"departure": "7 am"}}, "storage.departure must be a time \"HH:MM\", got '7 am'"),
        ({"storage": EV | {"departure": "24:00"}}, "storage.departure must be a time"),
        ({"storage": EV | {"departure": 700}}, "storage.departure must be a time"),
        ({"storage": BAT | {"kind": "flywheel"}}, "storage.kind must be 'battery' or 'ev', got 'flywheel'"),
        ({"storage": BAT | {"departure": "07:00"}}, "storage has an unknown key 'departure' for a battery"),
        ({"storage": EV | {"min_soc": 100}}, "storage has an unknown key 'min_soc' for an EV"),
        ({"storage": BAT | {"capcity": 1}}, "storage has an unknown key 'capcity'"),
        ({"storage": "big"}, "storage must be a table"),
        ({"storage": None}, "storage must be a table"),
        ({"integrator": {}, "ev": {"max_charge_w": 7_000, "arrive": "5pm"}}, "ev.arrive must be a time"),
        (
            {"integrator": {}, "ev": {"max_charge_w": 7_000, "need_mwh": -1}},
            "ev.need_mwh must be an integer >= 0",
        ),
        ({"integrator": {}, "ev": {"phases": 1}}, "ev.max_charge_w is missing"),
        ({"ev": {"max_charge_w": 7_000}}, "ev is an integrator home's EV: it needs integrator"),
        ({"integrator": {}, "storage": EV, "ev": {"max_charge_w": 1}}, "ev: its EV is already its storage"),
        ({"deferrable": {"w": 100, "relay": 8}}, r"deferrable.relay must be an integer in 0\.\.7, got 8"),
        ({"deferrable": {"w": 100, "hours": [1]}}, r"deferrable.hours must be \[from, until\] hours"),
        ({"deferrable": {"w": 100, "hours": [1, 25]}}, "deferrable.hours must be"),
        ({"deferrable": {"relay": 1}}, "deferrable.w is missing"),
        ({"deferrable": "washing machine"}, "deferrable must be a table"),
        ({"pv": {"kwp": 0}}, "pv.kwp must be an integer > 0, got 0"),
        ({"pv": {"kwp": 8, "tilt": 30}}, "pv has an unknown key 'tilt'"),
        ({"flex": {"ev": "cheap"}}, "flex.ev must be an integer >= 0, got 'cheap'"),
        ({"flex": {"price": -1}}, "flex.price must be an integer >= 0, got -1"),
        ({"flex": 3}, "flex must be a table"),
        ({"integrator": {"horizon": 0}}, r"integrator.horizon must be an integer in 1\.\.96, got 0"),
        ({"integrator": {"horizon": 97}}, r"integrator.horizon must be an integer in 1\.\.96"),
        ({"min_sell": 1.5}, r"min_sell must be an integer in -10000000\.\.10000000, got 1.5"),
        ({"max_buy": True}, "max_buy must be an integer"),
        ({"subscription_per_day": -1}, "subscription_per_day must be an integer >= 0, got -1"),
        ({"colour": "green"}, "prefs has an unknown key 'colour'"),
    ],
)
def test_a_bad_value_names_the_member_and_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(MemberError, match=f"^member 'alice' {message}"):
        MemberPrefs.parse("alice", data)


def test_the_error_is_the_coordinators() -> None:
    assert issubclass(MemberError, CoordinatorError)
    with pytest.raises(MemberError, match="member 'alice' prefs must be a table"):
        MemberPrefs.parse("alice", [1, 2])  # type: ignore[arg-type]


def test_the_ledger_stores_and_reads_typed_members(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as led:
        prefs = MemberPrefs.parse("ann", EVERYTHING)
        led.add_member("ann", "Ann", "prosumer", now=START, feeder="f1", bus="b7", prefs=prefs)
        led.add_member("bo", "Bo", "consumer", now=START + 1)
        stored = led._conn.execute("SELECT prefs FROM members WHERE id='ann'").fetchone()[0]
        assert json.loads(stored) == EVERYTHING
        ann, bo = led.members()
        assert ann == Member("ann", "Ann", "prosumer", "f1", "b7", START, None, prefs)
        assert bo.prefs == MemberPrefs() and bo.prefs_error is None
        assert ann.market_preferences() == Preferences("ann", feeder="f1", min_sell=3_000, max_buy=-2_000)
        # a MemberPrefs built by hand is checked as it is stored
        with pytest.raises(MemberError, match="member 'cy' storage.min_soc must be an integer in 0..1000"):
            led.add_member(
                "cy", "Cy", "storage", now=START, prefs=MemberPrefs(storage=StoragePrefs(1, 1, min_soc=5000))
            )
        assert [m.id for m in led.members()] == ["ann", "bo"]


def test_a_bad_stored_member_does_not_stop_the_others_dispatch(tmp_path: Path) -> None:
    """A ledger written before preferences were checked: each bad member is read with empty
    preferences and the reason, its devices are left out of dispatch (logged and counted), and the
    good member's battery gets its order."""
    led = Ledger.open(tmp_path / "l.db")
    cases = {
        "ok": json.dumps({"storage": BAT}),
        "bad1": json.dumps({"storage": BAT | {"capacity_mwh": "lots"}}),
        "bad2": json.dumps(
            {"storage": BAT, "integrator": {}, "ev": {"max_charge_w": 7_000, "departure": "7 am"}}
        ),
        "bad3": json.dumps({"deferrable": "washing machine"}),
        "bad4": "{not json",
    }
    vbs = []
    for i, (m, raw) in enumerate(cases.items()):
        led.add_member(m, m, "storage", now=START, feeder="f1")
        with led.transaction() as tx:  # as an old ledger holds them
            tx.execute("UPDATE members SET prefs=? WHERE id=?", (raw, m))
        vb = VirtualBoard("g1", f"m-{m}", bytes([60 + i]) * 32, lambda t: 500, bat_soc=500)
        led.add_board(vb.board, "virtual", vb.key.public, now=START, member_id=m, status="active")
        vbs.append(vb)
    errors = {m.id: m.prefs_error for m in led.members()}
    assert errors["ok"] is None
    assert "member 'bad1' storage.capacity_mwh must be an integer > 0" in str(errors["bad1"])
    assert "member 'bad2' ev.departure must be a time" in str(errors["bad2"])
    assert "member 'bad3' deferrable must be a table" in str(errors["bad3"])
    assert "member 'bad4' prefs are not JSON" in str(errors["bad4"])
    assert all(m.prefs == MemberPrefs() for m in led.members() if m.id != "ok")
    store(led, vbs, range(START, START + 901, 60))
    settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 960)  # the bad members are settled too

    async def publish(topic: str, payload: bytes) -> None:
        pass

    key = crypto.SigningKey(bytes(range(32)))
    sps = asyncio.run(Dispatch(led, Site("g1", 900, TARIFF), key, publish).run(START + 900))
    assert [sp.board_id for sp in sps] == ["m-ok"]
    assert led.rejections() == {"bad_device_prefs": 4}
    led.close()
