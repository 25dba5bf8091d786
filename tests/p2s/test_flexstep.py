"""The flexibility step in a coordinator built by the composition root: a member's battery set by
the p2s path, a request posted, cleared before its window, its setpoints in the board's signed
orders, delivery verified from the board's signed readings, paid with a signed record that the
audit checks. The numbers are docs/flexibility.md's worked example."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from coordinator.delivery.flexrecord import RecordError, open_record
from coordinator.ledger import Ledger, flex_requests, member_changes
from coordinator.ledger.journal import FLEXIBILITY
from coordinator.market import DSO, Tariff
from coordinator.p2s import devices, requests
from coordinator.p2s.errors import BadDevice, BadRequest, Conflict, UnknownMember
from coordinator.transaction import billing
from coordinator.transaction.audit import bundle as audit_bundle
from coordinator.transaction.audit.verify import verify_bundle
from protocol import crypto, frame, messages
from sim.board import VirtualBoard
from tests.coordinator.readings import store
from tests.coordinator.service import service

LEN = 900
T0 = 1_750_000_000 - 1_750_000_000 % LEN  # the first interval
BATTERY = {"capacity_mwh": 10_000_000, "max_charge_w": 3_000, "max_discharge_w": 3_000, "min_soc": 100}


def _community(tmp_path: Path) -> tuple[Ledger, dict[str, VirtualBoard]]:
    led = Ledger.open(tmp_path / "ledger.db")
    boards = {}
    for i, m in enumerate(("alice", "bob")):
        led.add_member(m, m.title(), "prosumer", now=T0 - 86_400, feeder="f1")
        b = VirtualBoard("g1", f"b-{m}", bytes([i + 1]) * 32, lambda ts: 1_000, bat_soc=600)
        led.add_board(b.board, "virtual", b.key.public, now=T0 - 86_400, member_id=m, status="active")
        boards[m] = b
    return led, boards


def test_bad_device_changes_are_refused_and_nothing_stored(tmp_path: Path) -> None:
    led, _ = _community(tmp_path)
    now = T0 + 10
    cases = [
        ("carol", {"pv": {"kwp": 5}}, UnknownMember, "no member 'carol'"),
        ("alice", {"storage": {**BATTERY, "capacity_mwh": -1}}, BadDevice, "storage.capacity_mwh must be"),
        ("alice", {"storage": {**BATTERY, "max_charge_w": 90_000}}, BadDevice, "above what its board"),
        ("alice", {"deferrable": {"w": 50_000}}, BadDevice, "deferrable.w 50000 W is above"),
        (
            "alice",
            {
                "storage": {
                    "kind": "ev",
                    "capacity_mwh": 40_000_000,
                    "max_charge_w": 11_000,
                    "departure": "15:21",
                }
            },
            BadDevice,
            "leave before it could charge",
        ),
        (
            "alice",
            {
                "integrator": {},
                "ev": {
                    "max_charge_w": 3_000,
                    "need_mwh": 60_000_000,
                    "arrive": "18:00",
                    "departure": "07:00",
                },
            },
            BadDevice,
            "cannot be charged between 18:00 and 07:00",
        ),
        ("alice", {"storage": "big"}, BadDevice, "storage must be a table"),
        ("alice", {"wind": 3}, BadDevice, "unknown key 'wind'"),
    ]
    assert (T0 + LEN) % 86_400 == 15 * 3600 + 15 * 60  # the change takes effect at 15:15 UTC
    for member, given, err, text in cases:
        with pytest.raises(err, match=text):
            devices.change(led, member, given, by="t", now=now, length=LEN)
    assert member_changes.history(led) == []


def test_bad_requests_are_refused_with_the_field(tmp_path: Path) -> None:
    led, _ = _community(tmp_path)
    now = T0 + 10
    ok = {
        "congestion_point": "f1",
        "direction": "reduce",
        "power_w": 2_000,
        "start": T0 + 4 * LEN,
        "intervals": 2,
        "price_cap": 30_000,
    }
    cases = [
        ({**ok, "congestion_point": "f9"}, "congestion_point 'f9' is no feeder"),
        ({**ok, "direction": "down"}, "direction must be"),
        ({**ok, "power_w": 0}, "power_w must be an integer"),
        ({**ok, "power_w": 200_000}, "more than the boards at 'f1' can move"),
        ({**ok, "start": T0}, "not in the future"),
        ({**ok, "start": T0 + 4 * LEN + 1}, "not an interval start"),
        ({**ok, "start": "tomorrow"}, "not a time"),
        ({**ok, "end": T0 + 9 * LEN}, "either intervals or end"),
        ({**ok, "price_cap": -5}, "price_cap must be"),
        ({**ok, "colour": "red"}, "unknown key 'colour'"),
        ([1, 2], "is a JSON object"),
    ]
    for data, text in cases:
        with pytest.raises(BadRequest, match=text):
            requests.post(led, data, grid="g1", now=now, length=LEN, source="t")
    requests.post(led, {**ok, "id": "r1"}, grid="g1", now=now, length=LEN, source="t")
    with pytest.raises(Conflict, match="overlaps request 'r1'"):
        requests.post(
            led, {**ok, "id": "r2", "start": T0 + 5 * LEN}, grid="g1", now=now, length=LEN, source="t"
        )
    with pytest.raises(Conflict, match="exists already"):
        requests.post(
            led, {**ok, "id": "r1", "start": T0 + 8 * LEN}, grid="g1", now=now, length=LEN, source="t"
        )
    assert [r.request_id for r in flex_requests.requests(led)] == ["r1"]


def test_a_request_is_cleared_delivered_verified_and_paid(tmp_path: Path) -> None:
    led, boards = _community(tmp_path)
    key = crypto.SigningKey(b"\x09" * 32)
    clock = [float(T0 + 60)]
    sent: list[tuple[str, bytes]] = []

    async def publish(topic: str, payload: bytes) -> None:
        sent.append((topic, payload))

    svc = service(led, key, lambda: clock[0], publish, settle_delay_s=30)
    loop = svc.intervals
    assert loop is not None
    # alice's battery, set through the p2s path while interval T0 runs: in force from T0 + LEN
    c = devices.change(
        led, "alice", {"storage": BATTERY, "flex": {"battery": 12_000}}, by="cli:op", now=T0 + 60, length=LEN
    )
    assert c.effective == T0 + LEN and c.applied_at is None
    assert {m.id: m.prefs.storage for m in led.members()}["alice"] is None  # not yet in force
    start = T0 + 5 * LEN  # the window: 2 intervals after a 4-interval baseline
    r = requests.post(
        led,
        {
            "id": "dso-1",
            "congestion_point": "f1",
            "direction": "reduce",
            "power_w": 2_000,
            "start": start,
            "intervals": 2,
            "price_cap": 30_000,
        },
        grid="g1",
        now=T0 + 60,
        length=LEN,
        source="api:operator",
    )
    alice = boards["alice"]
    store(led, boards.values(), range(T0, T0 + LEN + 1, 60))

    def run_to(t: int) -> None:
        clock[0] = float(t)
        asyncio.run(loop.step())

    run_to(T0 + LEN + 40)  # interval T0 settles; T0 + LEN dispatched: the change is in force
    assert {m.id: m.prefs.storage for m in led.members()}["alice"] is not None
    assert member_changes.history(led, "alice")[0].applied_at == T0 + LEN + 40
    assert flex_requests.request(led, "dso-1").state == "cleared"  # type: ignore[union-attr]
    orders = flex_requests.orders_of(led, "dso-1")
    assert [(o.party, o.asset, o.power_w, o.price) for o in orders] == [("alice", "battery", 2_000, 12_000)]
    # the boards meter 1 kW each until the window; alice's battery then discharges 2 kW
    t = T0 + LEN
    while t < start + 2 * LEN + LEN:
        nxt = t + LEN
        if start <= t < start + 2 * LEN:
            alice.power_w = lambda ts: -1_000
        else:
            alice.power_w = lambda ts: 1_000
        store(led, boards.values(), range(t + 60, nxt + 1, 60))
        run_to(nxt + 40)
        t = nxt
    # the window's orders reached alice's board, signed: 2 kW discharge
    mine = []
    for topic, fr in sent:
        if topic.endswith("/b-alice/order"):
            o = frame.open_frame(topic, fr, lambda m: crypto.Verifier(key.public))
            assert isinstance(o, messages.Order)
            mine.append((o.interval, o.bat_w))
    assert (start, -2_000) in mine and (start + LEN, -2_000) in mine
    done = flex_requests.request(led, "dso-1")
    assert done is not None and done.state == "settled", done
    # baseline 250 Wh per interval, measured -250 Wh: 500 Wh delivered per interval = the order
    assert done.delivered_mwh == 1_000_000 and done.paid == 1_000_000 * 12_000
    (rec,) = flex_requests.records(led, "alice")
    body = open_record(key.public, rec.body, rec.sig)
    assert body["baseline_mwh"] == 250_000 and body["measured_mwh"] == [-250_000, -250_000]
    with pytest.raises(RecordError):
        open_record(key.public, rec.body.replace(b"12000", b"12001"), rec.sig)
    st = billing.statement(led, "alice", T0, start + 4 * LEN)
    assert {x.account: x.amount for x in st.lines}[FLEXIBILITY] == 12_000_000_000
    dso = billing.statement(led, DSO, T0, start + 4 * LEN)
    assert {x.account: x.amount for x in dso.lines}[FLEXIBILITY] == -12_000_000_000
    # the audit bundle carries the signed record; verify backs the flexibility line with it
    charges = audit_bundle.Charges(Tariff(4_000, 20_750, 6_000, 3_000))
    b = audit_bundle.bundle(led, "g1", "alice", T0, start + 4 * LEN, charges, key.public)
    rep = verify_bundle(json.loads(json.dumps(b)), key.public)
    assert rep.ok, rep.problems
    assert not [w for w in rep.warnings if "flexibility" in w], rep.warnings
    b["flex_records"][0]["body"] = b["flex_records"][0]["body"].replace("12000", "12001")
    assert any("flexibility record" in p for p in verify_bundle(b, key.public).problems)
    assert r.request_id == "dso-1"
