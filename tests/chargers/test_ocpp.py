"""The OCPP central system against the ``ocpp`` package's own ChargePoint client over a loopback
WebSocket: binding, refusals, sessions and meter values, profiles from the board orders (1.6J and
2.0.1), a refused profile and a silent charger leaving the EV out of dispatch, the cross-check."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from websockets.exceptions import InvalidStatus

from coordinator.chargers import ChargerError
from coordinator.chargers.service import OcppService, bind
from coordinator.chargers.settings import OcppSettings, parse
from coordinator.delivery import chargers as dispatch_chargers
from coordinator.ledger import Ledger
from coordinator.ledger.queries import chargers as q
from coordinator.members import MemberPrefs
from protocol import crypto, frame, messages, topics
from tests.chargers.chargepoint import PASSWORD, energy16, open16, open201

KEY = crypto.SigningKey(bytes(range(32)))
GRID = "g1"
T0 = 1_750_000_000 - 1_750_000_000 % 900  # an interval start
EV = {
    "storage": {
        "kind": "ev",
        "capacity_mwh": 60_000_000,
        "max_charge_w": 11_000,
        "phases": 3,
        "target_soc": 800,
        "departure": "07:00",
    }
}


class Clock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def community(tmp_path: Path) -> Ledger:
    led = Ledger.open(tmp_path / "l.db")
    led.add_member("alice", "Alice", "ev", now=T0 - 86_400, prefs=MemberPrefs.parse("alice", EV))
    led.add_board("b-alice", "virtual", bytes(32), now=T0 - 86_400, member_id="alice", status="active")
    return led


def order(led: Ledger, board: str, start: int, ev_ma: int | None) -> None:
    oseq = led.next_oseq(board)
    o = messages.Order(
        board=board,
        oseq=oseq,
        interval=start,
        valid_from=start,
        valid_until=start + 900,
        ev_ma=ev_ma,
        relay_mask=0,
        relay_state=0,
    )
    led.add_board_order(board, oseq, start, frame.seal(o, topics.board_topic(GRID, board, "order"), KEY))


def service(led: Ledger, clock: Clock, **kw: object) -> OcppService:
    settings = OcppSettings("127.0.0.1:0", **kw)  # type: ignore[arg-type]
    return OcppService(led, settings, GRID, 900, KEY.public, now=clock)


async def started(svc: OcppService) -> None:
    svc.bind_configured()
    await svc.central.start()


def test_settings_name_the_bad_key() -> None:
    assert parse(None) is None and parse({}) is None
    s = parse({"listen": "0.0.0.0:9000", "chargers": {"CP1": "alice"}})
    assert s is not None and s.host_port == ("0.0.0.0", 9000) and s.bindings == {"CP1": "alice"}
    for bad, where in (
        ({"listen": "9000"}, "ocpp.listen"),
        ({"listen": "h:1", "silent_s": -1}, "ocpp.silent_s"),
        ({"listen": "h:1", "chargers": {"bad id!": "a"}}, "ocpp.chargers"),
        ({"listen": "h:1", "nonsense": 1}, "unknown key"),
    ):
        with pytest.raises(ChargerError, match=where):
            parse(bad)


def test_unknown_charger_is_refused_counted_and_the_service_goes_on(tmp_path: Path) -> None:
    led = community(tmp_path)
    bind(led, "CP1", "alice", T0, PASSWORD)
    with pytest.raises(ChargerError, match="no member"):
        bind(led, "CP2", "mallory", T0)

    async def main() -> None:
        svc = service(led, Clock(T0 + 5))
        await started(svc)
        try:
            with pytest.raises(InvalidStatus) as e:
                await open16(svc.central.port, "CP9")
            assert e.value.response.status_code == 404
            cp, ws, task = await open16(svc.central.port, "CP1")  # a bound one still connects
            await cp.call(call16.Heartbeat())
            await ws.close()
            task.cancel()
        finally:
            await svc.central.close()

    asyncio.run(main())
    assert led.rejections()["ocpp_unknown_charger"] == 1
    c = q.charger(led, "CP1")
    assert c is not None and c.protocol == "ocpp1.6" and c.vendor == "peergrid"


def test_session_meter_values_and_the_order_as_a_tx_profile_with_the_departure_need(tmp_path: Path) -> None:
    led = community(tmp_path)
    bind(led, "CP1", "alice", T0, PASSWORD)
    clock = Clock(T0 + 5)

    async def main() -> list[dict[str, object]]:
        svc = service(led, clock)
        await started(svc)
        try:
            cp, ws, task = await open16(svc.central.port, "CP1")
            r = await cp.call(
                call16.StartTransaction(
                    connector_id=1, id_tag="car", meter_start=1000, timestamp="2025-06-15T12:00:00Z"
                )
            )
            tx = r.transaction_id
            clock.t += 1
            await cp.call(energy16(1500, soc=50, tx=tx))  # the car at 50 %
            await svc.tick()
            assert cp.box.profiles == []  # no order for this interval yet: waits for the dispatch
            order(led, "b-alice", T0, ev_ma=10_000)
            await svc.tick()
            assert cp.box.limit_a() == 10.0
            first = cp.box.profiles[-1]
            await svc.tick()  # once per interval
            assert len(cp.box.profiles) == 1
            clock.t = T0 + 900 + 40  # next interval: no order by the grace time, the need's current applies
            await svc.tick()
            await cp.call(
                call16.StopTransaction(meter_stop=4000, timestamp="2025-06-15T12:20:00Z", transaction_id=tx)
            )
            await ws.close()
            task.cancel()
            return [first, cp.box.profiles[-1]]
        finally:
            await svc.central.close()

    first, second = asyncio.run(main())
    assert first["charging_profile_purpose"] == "TxProfile" and first["transaction_id"] == 1
    periods = first["charging_schedule"]["charging_schedule_period"]  # type: ignore[index]
    assert periods[0]["start_period"] == 0 and periods[0]["limit"] == 10.0
    # after the interval: what still brings the car from 50 % to 80 % of 60 kWh by 07:00 (at least 6 A)
    assert periods[1]["start_period"] == 900 - 6 and periods[1]["limit"] >= 6.0
    assert second["charging_schedule"]["charging_schedule_period"][0]["limit"] >= 6.0  # type: ignore[index]
    assert q.sessions(led, "CP1") == [(1, T0 + 5, 1000, T0 + 940, 4000, "Local")]
    assert q.last_meter(led, "CP1") == (T0 + 940, 4000, None, None)
    assert q.charger_soc(led) == {"alice": 500}
    assert [p[1:] for p in q.profiles(led, "CP1")][0] == (10_000, "TxProfile", "Accepted")


def test_malformed_frames_and_bad_values_are_counted_and_not_stored(tmp_path: Path) -> None:
    led = community(tmp_path)
    bind(led, "CP1", "alice", T0, PASSWORD)

    async def main() -> None:
        svc = service(led, Clock(T0 + 5))
        await started(svc)
        try:
            cp, ws, task = await open16(svc.central.port, "CP1")
            await ws.send("this is not OCPP")
            await ws.send('[2, "x1", "MeterValues", {"connectorId": "one"}]')  # breaks the schema
            await cp.call(energy16(2000))
            await cp.call(energy16(1500))  # the register went back
            await cp.call(energy16(2100, soc=150))  # 150 %
            await cp.call(call16.Heartbeat())  # the connection is still up
            await ws.close()
            task.cancel()
        finally:
            await svc.central.close()

    asyncio.run(main())
    rej = led.rejections()
    assert rej["ocpp_malformed"] == 1 and rej["ocpp_bad_call"] == 1 and rej["ocpp_bad_value"] == 2
    assert q.last_energy_wh(led, "CP1") == 2100 and q.charger_soc(led) == {}


def test_a_refused_profile_and_a_silent_charger_leave_the_ev_out_of_dispatch(tmp_path: Path) -> None:
    led = community(tmp_path)
    bind(led, "CP1", "alice", T0, PASSWORD)
    clock = Clock(T0 + 5)
    order(led, "b-alice", T0, ev_ma=16_000)

    async def main() -> None:
        svc = service(led, clock, silent_s=120)
        await started(svc)
        try:
            cp, ws, task = await open16(svc.central.port, "CP1")
            cp.box.accept = False
            await svc.tick()
            assert cp.box.profiles and cp.box.profiles[-1]["charging_profile_purpose"] == "TxDefaultProfile"
            c = q.charger(led, "CP1")
            assert c is not None and c.state == q.REFUSED
            members, _ = dispatch_chargers.adjust(led, led.members(), {"alice": "b-alice"}, {})
            assert members[0].prefs.storage is None  # the EV is left out of the next interval's market
            cp.box.accept = True
            clock.t = T0 + 900 + 1
            order(led, "b-alice", T0 + 900, ev_ma=16_000)
            await svc.tick()
            c = q.charger(led, "CP1")
            assert c is not None and c.state == q.ONLINE  # accepted again: back in
            clock.t += 500  # nothing heard for 500 s
            await svc.tick()
            c = q.charger(led, "CP1")
            assert c is not None and c.state == q.SILENT
            await cp.call(call16.Heartbeat())  # heard again: online
            c = q.charger(led, "CP1")
            assert c is not None and c.state == q.ONLINE
            await ws.close()
            task.cancel()
        finally:
            await svc.central.close()

    asyncio.run(main())
    rej = led.rejections()
    assert (
        rej["ocpp_profile_rejected"] == 1 and rej["ocpp_silent"] == 1 and rej["ev_charger_unavailable"] == 1
    )


def test_ocpp_201_station_gets_the_profile_for_its_transaction(tmp_path: Path) -> None:
    led = community(tmp_path)
    bind(led, "CS1", "alice", T0, PASSWORD)
    order(led, "b-alice", T0, ev_ma=8_000)

    async def main() -> dict[str, object]:
        svc = service(led, Clock(T0 + 5))
        await started(svc)
        try:
            cp, ws, task = await open201(svc.central.port, "CS1")
            meter = [
                {
                    "timestamp": "2025-06-15T12:00:00Z",
                    "sampledValue": [
                        {
                            "value": 2.5,
                            "measurand": "Energy.Active.Import.Register",
                            "unitOfMeasure": {"unit": "kWh"},
                        }
                    ],
                }
            ]
            await cp.call(
                call201.TransactionEvent(
                    event_type="Started",
                    timestamp="2025-06-15T12:00:00Z",
                    trigger_reason="CablePluggedIn",
                    seq_no=0,
                    transaction_info={"transactionId": "T-77"},
                    meter_value=meter,
                    evse={"id": 1},
                    id_token={"idToken": "car", "type": "Local"},
                )
            )
            await svc.tick()
            await ws.close()
            task.cancel()
            return cp.box.profiles[-1]
        finally:
            await svc.central.close()

    p = asyncio.run(main())
    assert p["charging_profile_purpose"] == "TxProfile" and p["transaction_id"] == "T-77"
    assert p["charging_schedule"][0]["charging_schedule_period"][0]["limit"] == 8.0  # type: ignore[index]
    assert q.sessions(led, "CS1")[0][2] == 2500 and q.charger(led, "CS1").protocol == "ocpp2.0.1"  # type: ignore[union-attr]


def test_charger_energy_beyond_the_boards_import_is_a_reported_disagreement(tmp_path: Path) -> None:
    led = community(tmp_path)
    bind(led, "CP1", "alice", T0 - 3 * 900)
    iv = T0 - 900
    q.add_meter(led, "CP1", iv, 10_000, None, None, None)
    q.add_meter(led, "CP1", iv + 900, 13_000, None, None, None)  # 3 kWh by the charger
    with led.transaction() as tx:  # the board's settled registers: 1 kWh imported
        tx.execute(
            "INSERT INTO board_deliveries (board_id, interval, seq0, seq1, e_imp0, e_imp1, e_exp0, e_exp1)"
            " VALUES ('b-alice', ?, 1, 2, 0, 1000000, 0, 0)",
            (iv,),
        )
    svc = service(led, Clock(T0 + 5))
    svc.cross_check(T0)
    assert q.checks(led, "CP1") == [(iv, 3_000_000, 1_000_000, False)]
    assert led.rejections()["ocpp_meter_disagreement"] == 1
    svc.cross_check(T0)  # once per interval
    assert led.rejections()["ocpp_meter_disagreement"] == 1
