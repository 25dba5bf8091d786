"""What the composition root runs for ``[ocpp]``: the central system (:mod:`.central`), and once a
second the chargers' part of the interval loop:

- **profiles**: when the running interval's board orders are in the ledger (the dispatcher stores
  them before it publishes), each connected charger gets its member's EV current from the order of
  the member's board as a charging profile (:func:`coordinator.chargers.profiles.plan`); a charger
  whose member's board got no order by ``GRACE_S`` into the interval gets the departure need's
  current. A session that starts (or ends) mid-interval gets its profile at once, not at the next
  interval. A profile refused (``Rejected``, a CallError, no answer in ``response_s``) marks the
  charger ``refused`` (counted ``ocpp_profile_rejected``, logged): the next interval's storage
  market leaves its EV out (:mod:`coordinator.delivery.chargers`), and the next accepted profile
  brings it back.
- **silence**: a charger heard from (any frame) less recently than ``silent_s`` is ``silent``
  (counted ``ocpp_silent``, logged), and its EV is left out the same way until it is heard again.
- **cross-check**: for each settled interval, the charger's energy (its register's advance) is
  compared with its member's board's import from the signed readings; a charger that counts more
  than the board by over ``tolerance_wh`` + ``tolerance_pct`` is a disagreement (stored in
  ``charger_checks``, counted ``ocpp_meter_disagreement``, logged). Settlement never reads it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from coordinator.chargers import ChargerError
from coordinator.chargers.auth import check_password, hash_password, verify_password
from coordinator.chargers.central import Central, Link
from coordinator.chargers.profiles import Plan, plan
from coordinator.chargers.settings import OcppSettings
from coordinator.ledger import Ledger
from coordinator.ledger.queries import chargers as q
from coordinator.members import Member
from protocol import crypto, frame, messages, topics

log = logging.getLogger("peergrid.ocpp")
GRACE_S = 30  # how long into an interval a charger waits for its member's order
BINDINGS_S = 10  # how often the connected chargers' bindings and passwords are checked
CHECK_BACK = 8  # settled intervals looked back at for the cross-check


@dataclass
class OcppService:
    ledger: Ledger
    settings: OcppSettings
    grid: str
    length: int  # interval length, s
    coordinator_key: bytes  # the public key the board orders are signed with
    now: Callable[[], float] = time.time
    central: Central = field(init=False)
    sent: dict[str, int] = field(default_factory=dict)  # charger -> interval whose profile it got
    sent_tx: dict[str, int | None] = field(default_factory=dict)  # charger -> its session then
    plans: dict[str, Plan] = field(default_factory=dict)  # charger -> the newest profile sent
    last_tick_s: float = 0.0  # wall time of the last tick's profiles (the bench reads it)
    next_bindings: int = 0  # when the connected chargers' bindings are checked next

    def __post_init__(self) -> None:
        self.central = Central(self.ledger, self.settings, self.now)
        self._verifier = crypto.Verifier(self.coordinator_key)

    def bind_configured(self) -> None:
        """The config's ``[ocpp.chargers]`` bindings; one naming an unknown member is reported
        (counted ``ocpp_bad_binding``) and left out, the others still bound. A binding with a
        ``password_file`` sets that password (when the stored one differs); one without keeps the
        password set by ``peergrid charger password``, and a charger with none is logged: it is
        refused until it has one."""
        now = int(self.now())
        for cid, member in sorted(self.settings.bindings.items()):
            if not q.member_exists(self.ledger, member):
                self.central.counters.add(self.ledger, "ocpp_bad_binding")
                log.error("ocpp.chargers.%s: no member %r; the charger stays unbound", cid, member)
                continue
            c = q.charger(self.ledger, cid)
            if c is None or c.member_id != member:
                q.bind(self.ledger, cid, member, now)
            pw = self.settings.passwords.get(cid)
            stored = q.password_hash(self.ledger, cid)
            if pw is not None and (stored is None or not verify_password(pw, stored)):
                q.set_password(self.ledger, cid, hash_password(pw), now)
                log.info("ocpp.chargers.%s: password set from its password_file", cid)
            elif pw is None and stored is None:
                log.warning(
                    "ocpp.chargers.%s has no password: the charger is refused until one is set"
                    " (password_file in [ocpp.chargers], or peergrid charger password %s)",
                    cid,
                    cid,
                )

    async def run(self, stop: asyncio.Event) -> None:
        self.bind_configured()
        try:
            await self.central.start()
        except (OSError, ChargerError) as e:  # a port already taken, a TLS file gone bad since the
            # config was loaded: reported, the coordinator goes on without it
            log.error("OCPP central system not started on %s: %s", self.settings.listen, e)
            return
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except Exception:  # one bad pass must not end the chargers' service
                    log.exception("ocpp: tick failed")
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except TimeoutError:
                    pass
        finally:
            await self.central.close()

    async def tick(self) -> None:
        now = int(self.now())
        start = now - now % self.length
        t0 = time.perf_counter()
        await self.send_profiles(start, now)
        self.last_tick_s = time.perf_counter() - t0
        self.central.refusals.roll()  # the summary of refused connections held back, once a window
        self.check_silence(now)
        self.cross_check(start)
        if now >= self.next_bindings:
            self.next_bindings = now + BINDINGS_S
            await self.check_bindings()

    async def check_bindings(self) -> None:
        """A connected charger whose binding changed since it connected (``peergrid charger
        password``, ``bind`` to another member, ``unbind``: run by an operator in another process)
        is disconnected: it comes back with the password in force now, for the member bound now,
        or not at all."""
        if not self.central.links:
            return
        bound = q.credentials(self.ledger)
        for cid, link in list(self.central.links.items()):
            now = bound.get(cid)
            if now == link.creds:
                continue
            if now is None:
                why = "unbound"
            else:
                why = "password changed" if now[0] == link.creds[0] else "bound to another member"
            log.warning("charger %s %s since it connected: disconnected", cid, why)
            await link.close(1008, why)

    # -- profiles -----------------------------------------------------------------------------

    def _order_ma(self, board: str, start: int) -> tuple[bool, int | None]:
        """(an order exists, its EV current) for the board's interval ``start``."""
        fr = q.board_order(self.ledger, board, start)
        if fr is None:
            return False, None
        topic = topics.board_topic(self.grid, board, "order")
        try:
            o = frame.open_frame(topic, fr, lambda m: self._verifier)
        except Exception as e:  # a stored order that does not open: reported, the need's current applies
            log.error("order of board %s for %d does not open: %s", board, start, e)
            return True, None
        return True, o.ev_ma if isinstance(o, messages.Order) else None

    def plan_for(self, link: Link, member: Member, start: int, now: int, soc: dict[str, int]) -> Plan | None:
        board = q.board_of(self.ledger, member.id)
        have, ma = self._order_ma(board, start) if board else (False, None)
        if not have and now - start < GRACE_S:
            return None  # the dispatch of this interval is not in yet
        s = soc.get(member.id)
        if s is None and board is not None:
            r = self.ledger.latest_reading(board)
            s = None if r is None else r.bat_soc
        delivered = 0
        sess = q.open_session(self.ledger, link.charger_id)
        if sess is not None:
            e = q.last_energy_wh(self.ledger, link.charger_id)
            delivered = max(0, (e or sess[2]) - sess[2]) * 1000
        return plan(member.prefs, ma, start, self.length, now, s, delivered)

    async def send_profiles(self, start: int, now: int) -> None:
        # once per interval, and again when a session started or ended since (a car plugged in
        # mid-interval gets its TxProfile now, not the TxDefaultProfile's current until the next)
        due = [
            link
            for cid, link in self.central.links.items()
            if self.sent.get(cid) != start or self.sent_tx.get(cid) != link.tx
        ]
        if not due:
            return
        members = {m.id: m for m in self.ledger.members()}
        soc = q.charger_soc(self.ledger)
        jobs = []
        for link in due:
            m = members.get(link.member_id)
            if m is None:
                continue
            p = self.plan_for(link, m, start, now, soc)
            if p is None:
                continue
            self.sent[link.charger_id] = start
            self.sent_tx[link.charger_id] = link.tx
            jobs.append(self._send(link, p, start))
        await asyncio.gather(*jobs)

    async def _send(self, link: Link, p: Plan, start: int) -> None:
        kind = "TxProfile" if link.tx is not None else "TxDefaultProfile"
        try:
            status = await link.set_profile(p)
        except TimeoutError:
            status = "NoAnswer"
        except Exception as e:  # a CallError (the ocpp package raises it), a closed connection
            status = f"Error:{type(e).__name__}"[:40]
        now = int(self.now())
        q.add_profile(self.ledger, link.charger_id, start, p.limit_ma, kind, status, now)
        self.plans[link.charger_id] = p
        if status == "Accepted":
            c = q.charger(self.ledger, link.charger_id)
            if c is not None and c.state != q.ONLINE:
                q.set_state(self.ledger, link.charger_id, q.ONLINE, None, now)
                log.info("charger %s accepts profiles again", link.charger_id)
            log.info(
                "charger %s: %s %.1f A until %d, then %.1f A",
                link.charger_id,
                kind,
                p.limit_ma / 1000,
                p.until,
                p.then_ma / 1000,
            )
            return
        self.central.counters.add(self.ledger, "ocpp_profile_rejected")
        q.set_state(self.ledger, link.charger_id, q.REFUSED, f"{kind} {status}")
        log.warning(
            "charger %s refused its %s (%s): its EV leaves the next interval's storage market",
            link.charger_id,
            kind,
            status,
        )

    # -- liveness and cross-check --------------------------------------------------------------

    def check_silence(self, now: int) -> None:
        for c in q.chargers(self.ledger):
            if c.state == q.ONLINE and c.last_seen is not None and now - c.last_seen > self.settings.silent_s:
                self.central.counters.add(self.ledger, "ocpp_silent")
                q.set_state(self.ledger, c.charger_id, q.SILENT, f"nothing heard for {now - c.last_seen} s")
                log.warning(
                    "charger %s silent for %d s: its EV leaves the next interval's storage market",
                    c.charger_id,
                    now - c.last_seen,
                )

    def cross_check(self, start: int) -> None:
        """Each charger's energy in the recently settled intervals against its member's board."""
        s = self.settings
        for c in q.chargers(self.ledger):
            board = q.board_of(self.ledger, c.member_id)
            if board is None:
                continue
            for k in range(1, CHECK_BACK + 1):
                iv = start - k * self.length
                if iv < c.bound_at - self.length or q.checked(self.ledger, c.charger_id, iv):
                    continue
                board_mwh = q.board_import(self.ledger, board, iv)
                wh = q.energy_between(self.ledger, c.charger_id, iv, iv + self.length)
                if board_mwh is None or wh is None:
                    continue
                mwh = wh * 1000
                ok = mwh <= board_mwh + s.tolerance_wh * 1000 + board_mwh * s.tolerance_pct // 100
                q.add_check(self.ledger, iv, c.charger_id, mwh, board_mwh, ok)
                if not ok:
                    self.central.counters.add(self.ledger, "ocpp_meter_disagreement")
                    log.warning(
                        "charger %s counted %d Wh in interval %d, its member's board %s imported %d Wh: "
                        "reported, settlement keeps the board's signed readings",
                        c.charger_id,
                        wh,
                        iv,
                        board,
                        board_mwh // 1000,
                    )


def check_id(charger_id: str) -> str:
    """``charger_id`` if it is an OCPP charge point identity we accept, else a ChargerError."""
    from coordinator.chargers.settings import CHARGER_ID

    if not CHARGER_ID.match(charger_id):
        raise ChargerError(f"charger id {charger_id!r} must be 1-48 of [A-Za-z0-9_.:-]")
    return charger_id


def bind(ledger: Ledger, charger_id: str, member_id: str, now: int, password: str | None = None) -> None:
    """Bind a charger to a member (``peergrid charger bind``, ``PUT /api/chargers/{id}``): the
    member must exist. With ``password``, it becomes the charger's password (a charger without one
    is refused)."""
    check_id(charger_id)
    if not q.member_exists(ledger, member_id):
        raise ChargerError(f"no member {member_id!r}")
    digest = None if password is None else hash_password(check_password(password))
    q.bind(ledger, charger_id, member_id, now, digest)


def set_password(ledger: Ledger, charger_id: str, password: str, now: int) -> None:
    """A bound charger's new password (``peergrid charger password``, ``POST
    /api/chargers/{id}/password``): the old one is refused from then on (a connection open now is
    closed at the service's next binding check)."""
    if not q.set_password(ledger, charger_id, hash_password(check_password(password)), now):
        raise NotBound(f"charger {charger_id!r} is not bound (peergrid charger bind)")


def unbind(ledger: Ledger, charger_id: str) -> str:
    """Forget a charger's binding (``peergrid charger unbind``, ``DELETE /api/chargers/{id}``): it
    is refused from then on; the member it was bound to."""
    c = q.charger(ledger, charger_id)
    if c is None or not q.unbind(ledger, charger_id):
        raise NotBound(f"charger {charger_id!r} is not bound")
    return c.member_id


class NotBound(ChargerError):
    """The charger is not bound to a member."""
