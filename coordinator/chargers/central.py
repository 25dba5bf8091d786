"""The OCPP central system: a WebSocket server (``websockets``) and the handlers of OCPP 1.6J and
2.0.1 (the ``ocpp`` package's ChargePoint classes, one per connected charger).

A charger connects to ``ws://<listen>/<charger id>`` (``wss://`` with ``[ocpp] tls_cert``; any path
prefix, the last segment is the id) offering ``ocpp1.6`` or ``ocpp2.0.1``, with HTTP Basic
authentication (OCPP security profile 1, or 2 over TLS): user = the charger id, password = the one
set for it (its salted hash is in the ledger). An id not bound to a member is answered 404 before
the WebSocket opens (counted ``ocpp_unknown_charger``); missing, malformed or wrong credentials
401 with ``WWW-Authenticate`` (counted ``ocpp_bad_password``); a bound charger without a password
401 too (counted ``ocpp_no_password``, the log says how to set one). Refusals are logged at a
bounded rate (:class:`.auth.RefusedLog`), never with the password. Only an authenticated connection
replaces an older one of the same charger. Frames that are not OCPP-J
(``ocpp_malformed``), calls that break the schema (answered with a CallError,
``ocpp_bad_call``) and values out of range (``ocpp_bad_value``: a negative or backward energy
register, a power beyond 1 MW, a state of charge beyond 100 %) are counted and logged; the
connection stays up and the value is not stored. Times are the coordinator's clock at receipt,
not the charger's (a wallbox's clock is often wrong): a sample is filed when it arrives.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, TypeVar, cast

from ocpp.exceptions import OCPPError
from ocpp.messages import unpack
from ocpp.routing import on as _on
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as res16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as res201
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from coordinator.chargers.auth import BadCredentials, RefusedLog, parse_basic, verify_password
from coordinator.chargers.profiles import Plan
from coordinator.chargers.settings import CHARGER_ID, OcppSettings
from coordinator.ledger import Ledger
from coordinator.ledger.queries import chargers as q

log = logging.getLogger("peergrid.ocpp")
logging.getLogger("ocpp").setLevel(logging.CRITICAL)  # every frame at INFO; its errors are ours to report

ENERGY_MAX_WH = 10**12
POWER_MAX_W = 1_000_000
DEFAULT_PROFILE_ID = 1
F = TypeVar("F", bound=Callable[..., Any])


def on(action: str) -> Callable[[F], F]:
    """The ocpp package's route decorator, typed."""
    return cast(Callable[[F], F], _on(action))


TX_PROFILE_ID = 2


def iso(t: float) -> str:
    return datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Counters:
    """What the central system refused or saw go wrong since start (also in ``rejections``)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, ledger: Ledger, code: str, n: int = 1) -> None:
        self.counts[code] = self.counts.get(code, 0) + n
        ledger.count_rejections({code: n})


class BadValue(ValueError):
    """A value from a charger out of range (reported, not stored)."""


@dataclass(frozen=True)
class Sample:
    energy_wh: int | None = None
    power_w: int | None = None
    soc: int | None = None  # per-mille


def _scaled(value: object, unit: str, kilo: str, multiplier: int = 0) -> int:
    try:
        v = float(str(value))
    except ValueError:
        raise BadValue(f"value {value!r} is not a number") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise BadValue(f"value {value!r} is not a number")
    v *= 10.0**multiplier
    if unit == kilo:
        v *= 1000
    return round(v)


def parse_samples(meter_value: list[dict[str, Any]], v201: bool) -> tuple[Sample, list[str]]:
    """The newest energy register (Wh), active power (W) and state of charge (per-mille) in a
    MeterValues ``meterValue`` list (snake_case keys, as the ocpp package hands them over), and
    the reasons of the values refused. Per-phase values are left out (the totals are used)."""
    energy = power = soc = None
    bad: list[str] = []
    for mv in meter_value or []:
        for sv in mv.get("sampled_value") or []:
            if sv.get("phase"):
                continue
            measurand = sv.get("measurand", "Energy.Active.Import.Register")
            if v201:
                uom = sv.get("unit_of_measure") or {}
                unit, mult = str(uom.get("unit", "")), int(uom.get("multiplier", 0))
            else:
                unit, mult = str(sv.get("unit", "")), 0
            try:
                if measurand == "Energy.Active.Import.Register":
                    e = _scaled(sv.get("value"), unit, "kWh", mult)
                    if not 0 <= e <= ENERGY_MAX_WH:
                        raise BadValue(f"energy register {e} Wh out of range")
                    energy = e
                elif measurand == "Power.Active.Import":
                    p = _scaled(sv.get("value"), unit, "kW", mult)
                    if not 0 <= p <= POWER_MAX_W:
                        raise BadValue(f"power {p} W out of range")
                    power = p
                elif measurand == "SoC":
                    s = _scaled(sv.get("value"), unit, "-", mult)
                    if not 0 <= s <= 100:
                        raise BadValue(f"state of charge {s} % out of range")
                    soc = s * 10
            except BadValue as e:
                bad.append(str(e))
    return Sample(energy, power, soc), bad


class Link:
    """What the central system and its service share of one connected charger, whatever its OCPP
    version: its id, member, the profile call, the store of what it reports."""

    version: str
    station_tx: str = ""  # OCPP 2.0.1: the station's id of the running transaction

    def __init__(self, central: Central, charger_id: str, member_id: str) -> None:
        self.central = central
        self.charger_id = charger_id
        self.member_id = member_id
        self.tx: int | None = None  # our transaction id of the running session
        self.creds: tuple[str, str | None] = (member_id, None)  # member, password hash it connected with
        self.connector = 1

    @property
    def ledger(self) -> Ledger:
        return self.central.ledger

    async def close(self, code: int, reason: str) -> None:
        """Close the charger's WebSocket (its handler then forgets the link)."""
        await self.cp._connection.close(code, reason)  # type: ignore[attr-defined]

    def now(self) -> int:
        return int(self.central.now())

    def periods(self, plan: Plan) -> list[dict[str, Any]]:
        """The schedule's periods, the same in both OCPP versions: the limit now (A, to 0.1 A), and
        from the interval's end the current that still meets the car's need by departure."""
        out: list[dict[str, Any]] = [
            {"startPeriod": 0, "limit": plan.limit_ma // 100 / 10, "numberPhases": plan.phases}
        ]
        later = plan.until - self.now()
        if later > 0:
            out.append({"startPeriod": later, "limit": plan.then_ma // 100 / 10, "numberPhases": plan.phases})
        return out

    def seen(self) -> None:
        c = q.charger(self.ledger, self.charger_id)
        if c is not None and c.state in (q.SILENT, q.OFFLINE, q.UNSEEN):
            q.set_state(self.ledger, self.charger_id, q.ONLINE, None, self.now())
            log.info("charger %s (%s) online", self.charger_id, self.member_id)
        else:
            q.seen(self.ledger, self.charger_id, self.now())

    def bad(self, code: str, why: str) -> None:
        self.central.counters.add(self.ledger, code)
        log.warning("charger %s: %s (%s)", self.charger_id, why, code)

    def store(self, sample: Sample, bad: list[str]) -> None:
        for why in bad:
            self.bad("ocpp_bad_value", why)
        e = sample.energy_wh
        if e is not None:
            last = q.last_energy_wh(self.ledger, self.charger_id)
            if last is not None and e < last:
                self.bad("ocpp_bad_value", f"energy register went back from {last} to {e} Wh")
                e = None
        if e is None and sample.power_w is None and sample.soc is None:
            return
        q.add_meter(self.ledger, self.charger_id, self.now(), e, sample.power_w, sample.soc, self.tx)

    def start(self, connector: int, id_tag: str, meter_wh: int) -> int:
        if not 0 <= meter_wh <= ENERGY_MAX_WH:
            self.bad("ocpp_bad_value", f"session meter start {meter_wh} Wh out of range")
            meter_wh = max(0, min(meter_wh, ENERGY_MAX_WH))
        self.connector = connector
        self.tx = q.start_session(self.ledger, self.charger_id, connector, id_tag, self.now(), meter_wh)
        self.store(Sample(energy_wh=meter_wh), [])
        log.info("charger %s: session %d started at %d Wh", self.charger_id, self.tx, meter_wh)
        return self.tx

    def stop(self, tx: int, meter_wh: int, reason: str) -> None:
        if not q.stop_session(self.ledger, self.charger_id, tx, self.now(), meter_wh, reason):
            self.bad("ocpp_bad_value", f"stop of session {tx}, which is not running")
        self.store(Sample(energy_wh=meter_wh), [])
        if self.tx == tx:
            self.tx = None

    async def set_profile(self, plan: Plan) -> str:
        """Send ``plan`` as a charging profile; the charger's status (``Accepted``, ``Rejected``,
        ``NotSupported``, ``CallError``)."""
        raise NotImplementedError


class _Routing:
    """Counting what the ocpp package only logs: frames that are not OCPP-J, calls it refuses."""

    link: Link

    async def route_message(self, raw_msg: str | bytes) -> None:
        try:
            unpack(raw_msg)
        except OCPPError as e:
            self.link.bad("ocpp_malformed", f"frame is not OCPP-J: {str(e)[:120]}")
            return
        await super().route_message(raw_msg)  # type: ignore[misc]

    async def _handle_call(self, msg: Any) -> Any:
        try:
            return await super()._handle_call(msg)  # type: ignore[misc]
        except OCPPError as e:
            self.link.bad("ocpp_bad_call", f"{msg.action}: {type(e).__name__}: {str(e)[:120]}")
            raise


class Charger16(_Routing, Cp16):  # type: ignore[misc]
    """A charger speaking OCPP 1.6J."""

    def __init__(self, link: Link, ws: ServerConnection, timeout: int) -> None:
        super().__init__(link.charger_id, ws, response_timeout=timeout)
        self.link = link

    @on("BootNotification")
    def boot(self, charge_point_vendor: str, charge_point_model: str, **_: Any) -> Any:
        link = self.link
        q.booted(link.ledger, link.charger_id, "ocpp1.6", charge_point_vendor, charge_point_model, link.now())
        link.seen()
        return res16.BootNotification(iso(link.now()), link.central.settings.heartbeat_s, "Accepted")

    @on("Heartbeat")
    def heartbeat(self) -> Any:
        self.link.seen()
        return res16.Heartbeat(iso(self.link.now()))

    @on("StatusNotification")
    def status(self, **_: Any) -> Any:
        self.link.seen()
        return res16.StatusNotification()

    @on("Authorize")
    def authorize(self, id_tag: str) -> Any:
        self.link.seen()
        return res16.Authorize({"status": "Accepted"})

    @on("StartTransaction")
    def start_tx(self, connector_id: int, id_tag: str, meter_start: int, **_: Any) -> Any:
        self.link.seen()
        tx = self.link.start(connector_id, id_tag, meter_start)
        return res16.StartTransaction(tx, {"status": "Accepted"})

    @on("StopTransaction")
    def stop_tx(self, meter_stop: int, transaction_id: int, reason: str = "Local", **_: Any) -> Any:
        self.link.seen()
        self.link.stop(transaction_id, meter_stop, reason)
        return res16.StopTransaction()

    @on("MeterValues")
    def meter_values(self, connector_id: int, meter_value: list[dict[str, Any]], **_: Any) -> Any:
        self.link.seen()
        self.link.store(*parse_samples(meter_value, v201=False))
        return res16.MeterValues()


class Link16(Link):
    version = "ocpp1.6"
    cp: Charger16

    async def set_profile(self, plan: Plan) -> str:
        tx = self.tx
        periods = self.periods(plan)
        profile: dict[str, Any] = {
            "chargingProfileId": DEFAULT_PROFILE_ID if tx is None else TX_PROFILE_ID,
            "stackLevel": 0 if tx is None else 1,
            "chargingProfilePurpose": "TxDefaultProfile" if tx is None else "TxProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "startSchedule": iso(self.now()),
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": periods,
            },
        }
        if tx is not None:
            profile["transactionId"] = tx
        r = await self.cp.call(
            call16.SetChargingProfile(
                connector_id=0 if tx is None else self.connector, cs_charging_profiles=profile
            ),
            suppress=False,
        )
        return str(r.status)


class Charger201(_Routing, Cp201):  # type: ignore[misc]
    """A charging station speaking OCPP 2.0.1."""

    def __init__(self, link: Link201, ws: ServerConnection, timeout: int) -> None:
        super().__init__(link.charger_id, ws, response_timeout=timeout)
        self.link = link

    @on("BootNotification")
    def boot(self, charging_station: dict[str, Any], reason: str, **_: Any) -> Any:
        link = self.link
        vendor, model = str(charging_station.get("vendor_name", "")), str(charging_station.get("model", ""))
        q.booted(link.ledger, link.charger_id, "ocpp2.0.1", vendor, model, link.now())
        link.seen()
        return res201.BootNotification(iso(link.now()), link.central.settings.heartbeat_s, "Accepted")

    @on("Heartbeat")
    def heartbeat(self) -> Any:
        self.link.seen()
        return res201.Heartbeat(iso(self.link.now()))

    @on("StatusNotification")
    def status(self, **_: Any) -> Any:
        self.link.seen()
        return res201.StatusNotification()

    @on("MeterValues")
    def meter_values(self, evse_id: int, meter_value: list[dict[str, Any]], **_: Any) -> Any:
        self.link.seen()
        self.link.store(*parse_samples(meter_value, v201=True))
        return res201.MeterValues()

    @on("TransactionEvent")
    def transaction_event(
        self,
        event_type: str,
        transaction_info: dict[str, Any],
        meter_value: list[dict[str, Any]] | None = None,
        evse: dict[str, Any] | None = None,
        id_token: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        link = self.link
        link.seen()
        sample, bad = parse_samples(meter_value or [], v201=True)
        station_tx = str(transaction_info.get("transaction_id", ""))
        if event_type == "Started":
            link.station_tx = station_tx
            tag = str((id_token or {}).get("id_token", ""))
            link.start(int((evse or {}).get("id", 1)), tag, sample.energy_wh or 0)
            for why in bad:
                link.bad("ocpp_bad_value", why)
        elif event_type == "Ended" and link.tx is not None and station_tx == link.station_tx:
            end = (
                sample.energy_wh
                if sample.energy_wh is not None
                else q.last_energy_wh(link.ledger, link.charger_id)
            )
            link.stop(link.tx, end or 0, str(transaction_info.get("stopped_reason", "Local")))
            for why in bad:
                link.bad("ocpp_bad_value", why)
        else:
            link.store(sample, bad)
        return res201.TransactionEvent()


class Link201(Link):
    version = "ocpp2.0.1"
    cp: Charger201

    async def set_profile(self, plan: Plan) -> str:
        tx = self.tx
        periods = self.periods(plan)
        profile: dict[str, Any] = {
            "id": DEFAULT_PROFILE_ID if tx is None else TX_PROFILE_ID,
            "stackLevel": 0 if tx is None else 1,
            "chargingProfilePurpose": "TxDefaultProfile" if tx is None else "TxProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": [
                {
                    "id": 1,
                    "startSchedule": iso(self.now()),
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": periods,
                }
            ],
        }
        if tx is not None:
            profile["transactionId"] = self.station_tx
        r = await self.cp.call(
            call201.SetChargingProfile(evse_id=0 if tx is None else self.connector, charging_profile=profile),
            suppress=False,
        )
        return str(r.status)


class Central:
    """The WebSocket server and the connected chargers (``links``: charger id -> its link)."""

    def __init__(self, ledger: Ledger, settings: OcppSettings, now: Callable[[], float]) -> None:
        self.ledger = ledger
        self.settings = settings
        self.now = now
        self.counters = Counters()
        self.links: dict[str, Link] = {}
        self.port = 0  # the port listened on (the config's, or the one the OS chose for port 0)
        self.server: Server | None = None
        self.refusals = RefusedLog()
        # connection -> (member, password hash) it authenticated with, until its handler takes it
        self._creds: weakref.WeakKeyDictionary[ServerConnection, tuple[str, str | None]] = (
            weakref.WeakKeyDictionary()
        )
        self._hashing = asyncio.Semaphore(2)  # password checks at once (scrypt: 16 MiB, ~25 ms each)

    @staticmethod
    def charger_id(path: str) -> str:
        return path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]

    def _refuse(self, connection: ServerConnection, cid: str, code: str, why: str) -> Response:
        self.counters.add(self.ledger, code)
        self.refusals.refused(cid, code, why)
        r = connection.respond(HTTPStatus.UNAUTHORIZED, "charger authentication failed\n")
        r.headers["WWW-Authenticate"] = 'Basic realm="peergrid"'
        return r

    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse before the WebSocket opens: an unbound id (404), a bound charger without a
        password or without the right credentials (401)."""
        cid = self.charger_id(request.path)
        c = q.charger(self.ledger, cid) if CHARGER_ID.match(cid) else None
        if c is None:
            self.counters.add(self.ledger, "ocpp_unknown_charger")
            why = f"{cid[:64]!r} is not bound to a member (peergrid charger bind)"
            self.refusals.refused("unknown", "ocpp_unknown_charger", why)
            return connection.respond(HTTPStatus.NOT_FOUND, "unknown charger: bind it to a member first\n")
        stored = q.password_hash(self.ledger, cid)
        if stored is None:
            return self._refuse(
                connection,
                cid,
                "ocpp_no_password",
                f"it has no password; set one with `peergrid charger password {cid} --config <config>`"
                " (or password_file in [ocpp.chargers]) and enter it in the wallbox",
            )
        try:
            user, pw = parse_basic(request.headers.get_all("Authorization"))
        except BadCredentials as e:
            return self._refuse(connection, cid, "ocpp_bad_password", str(e))
        if user != cid and f"{user}:{pw}".startswith(f"{cid}:"):  # an id with a colon (1.6 allows it)
            user, pw = cid, f"{user}:{pw}"[len(cid) + 1 :]
        if user != cid:
            return self._refuse(
                connection, cid, "ocpp_bad_password", f"Basic user {user[:64]!r} is not the charger id"
            )
        async with self._hashing:
            ok = await asyncio.to_thread(verify_password, pw, stored)
        if not ok:
            return self._refuse(connection, cid, "ocpp_bad_password", "wrong password")
        self._creds[connection] = (c.member_id, stored)  # what this connection authenticated with
        return None

    async def handler(self, ws: ServerConnection) -> None:
        cid = self.charger_id(ws.request.path if ws.request else "")
        c = q.charger(self.ledger, cid)
        if c is None:  # unbound between the handshake and now
            await ws.close(1008, "unknown charger")
            return
        link: Link
        if ws.subprotocol == "ocpp2.0.1":
            link = Link201(self, cid, c.member_id)
            link.cp = Charger201(link, ws, self.settings.response_s)
        else:  # ocpp1.6, or a charger that named no subprotocol: 1.6J is what most installed ones speak
            link = Link16(self, cid, c.member_id)
            link.cp = Charger16(link, ws, self.settings.response_s)
        link.creds = self._creds.pop(ws, (c.member_id, None))
        old = self.links.get(cid)
        if old is not None:
            log.warning("charger %s connected again: the older connection is closed", cid)
            await old.close(1000, "replaced")
        self.links[cid] = link
        open_tx = q.open_session(self.ledger, cid)
        if (
            open_tx is not None
        ):  # a session that ran across a reconnect (2.0.1 ids are lost: ended by the station)
            link.tx = open_tx[0]
        link.seen()
        log.info("charger %s connected (%s) for %s", cid, link.version, c.member_id)
        try:
            await link.cp.start()
        except ConnectionClosed:
            pass
        finally:
            if self.links.get(cid) is link:
                del self.links[cid]
                q.set_state(self.ledger, cid, q.OFFLINE, "connection closed", int(self.now()))
                log.warning("charger %s disconnected", cid)

    async def start(self) -> Server:
        host, port = self.settings.host_port
        tls = self.settings.ssl_context()
        self.server = await serve(
            self.handler,
            host,
            port,
            subprotocols=["ocpp1.6", "ocpp2.0.1"],  # type: ignore[list-item]
            process_request=self.process_request,
            ping_interval=None,  # the chargers' heartbeats tell liveness (OCPP); many reject pings
            ssl=tls,
        )
        socks = list(self.server.sockets)
        self.port = socks[0].getsockname()[1] if socks else port
        if tls is None:
            log.info(
                "OCPP central system on ws://%s:%d (security profile 1: chargers' passwords travel"
                " unencrypted; [ocpp] tls_cert and tls_key give wss://)",
                host,
                self.port,
            )
        else:
            log.info("OCPP central system on wss://%s:%d (security profile 2)", host, self.port)
        return self.server

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await asyncio.wait_for(self.server.wait_closed(), 10)
