# Orders from the coordinator: authenticate, check freshness, clamp to the board's own limits,
# execute through the actuators and report what was actually applied (a signed Ack).
#
# The board trusts nothing it cannot check itself: the frame must be signed by the coordinator's
# key for this board's order topic, its order sequence must be newer than the last one applied
# (persisted, so a replay after reboot is refused too), and it must be valid now. Setpoints are
# clamped to the limits in the board file; a None setpoint leaves that actuator at its safe default.
import gc

from protocol import frame, messages


def clamp(v, lo, hi):
    return lo if v < lo else hi if v > hi else v


class Limits:
    """Local limits from the board file (compact form): all integers."""

    def __init__(self, cfg):
        bat = cfg.get("battery") or {}
        ev = cfg.get("ev") or {}
        pv = cfg.get("pv") or {}
        self.bat_charge_w = bat.get("max_charge_w", 0)
        self.bat_discharge_w = bat.get("max_discharge_w", 0)
        self.ev_min_ma = ev.get("min_ma", 6000)  # IEC 61851: no charging below 6 A
        self.ev_max_ma = ev.get("max_ma", 0)
        self.pv_max_w = pv.get("max_export_w", 0)
        self.relay_mask = (1 << len(cfg.get("relays") or ())) - 1
        safe = cfg.get("safe") or {}
        # the safe defaults obey the same limits as orders (the fail-safe applies them directly)
        self.safe_bat_w = clamp(safe.get("bat_w", 0), -self.bat_discharge_w, self.bat_charge_w)
        ev = safe.get("ev_ma", 0)
        self.safe_ev_ma = 0 if ev < self.ev_min_ma else clamp(ev, self.ev_min_ma, self.ev_max_ma)
        self.safe_pv_limit_w = clamp(safe.get("pv_limit_w", self.pv_max_w), 0, self.pv_max_w)
        self.safe_relays = safe.get("relays", 0) & self.relay_mask

    def apply_limits(self, o):
        """Return (bat_w, ev_ma, pv_limit_w, relay_state, reason) within the limits."""
        why = ""
        bat = self.safe_bat_w if o.bat_w is None else o.bat_w
        b = clamp(bat, -self.bat_discharge_w, self.bat_charge_w)
        if b != bat:
            why = "bat_w limited to %d" % b
        ev = self.safe_ev_ma if o.ev_ma is None else o.ev_ma
        e = 0 if ev < self.ev_min_ma else clamp(ev, self.ev_min_ma, self.ev_max_ma)
        if e != ev and not why:
            why = "ev_ma limited to %d" % e
        pv = self.safe_pv_limit_w if o.pv_limit_w is None else o.pv_limit_w
        p = clamp(pv, 0, self.pv_max_w)
        if p != pv and not why:
            why = "pv_limit_w limited to %d" % p
        if o.relay_mask & ~self.relay_mask and not why:
            why = "relays %d not fitted" % (o.relay_mask & ~self.relay_mask)
        mask = o.relay_mask & self.relay_mask
        relays = (self.safe_relays & ~mask) | (o.relay_state & mask)
        return b, e, p, relays, why


class OrderHandler:
    def __init__(self, board, grid, coordinator_verifier, limits, actuators, registers, key,
                 interval_s=900):
        self.board = board
        self.topic = "peergrid/%s/b/%s/order" % (grid, board)
        self.ack_topic = "peergrid/%s/b/%s/ack" % (grid, board)
        self.verifier = coordinator_verifier
        self.limits = limits
        self.act = actuators
        self.regs = registers
        self.key = key
        self.interval_s = interval_s
        self.rejected = 0
        self.pending = None  # a valid order whose window has not opened yet
        self.last_valid = None  # when the last valid order took effect (None: since boot)
        self.failsafe = False

    def _verifier_for(self, msg):
        return self.verifier

    def _refusal(self, topic, o, now):
        if not isinstance(o, messages.Order) or topic != self.topic:
            return "not an order for this board"
        if o.oseq <= self.regs.last_oseq:
            return "replayed order %d (last %d)" % (o.oseq, self.regs.last_oseq)
        if o.valid_from >= o.valid_until:
            return "empty validity window"
        if now >= o.valid_until:
            return "stale: expired %d s ago" % (now - o.valid_until)
        return ""

    async def handle(self, topic, payload, now):
        """Process one order frame. Returns (ack_topic, ack_frame) or None when the order is
        scheduled for later (acknowledged when applied). Never raises on bad input: a refused
        order is counted and acknowledged with status REJECTED and the reason. Awaited: the
        setpoints' Modbus writes yield to the event loop while the inverters answer."""
        o = None
        gc.collect()  # verification builds big-integer temporaries: start from a clean heap
        try:
            o = frame.open_frame(topic, payload, self._verifier_for)
            why = self._refusal(topic, o, now)
        except Exception as e:  # ProtocolError from the frame: malformed, forged, wrong topic
            why = _short(e)
        if why:
            self.rejected += 1
            oseq = o.oseq if isinstance(o, messages.Order) else 0
            return self._ack(oseq, now, messages.ST_REJECTED, why, None)
        if not isinstance(o, messages.Order):  # _refusal said so already; for the type checker
            return None
        if now < o.valid_from:
            # held until its window opens; its number is persisted only when it takes effect, so a
            # board that reboots meanwhile takes the (retained) order again instead of refusing it
            p = self.pending
            if p is not None and o.oseq <= p.oseq:
                if o.oseq == p.oseq:
                    return None  # the same order again (a redelivery): already scheduled
                self.rejected += 1
                return self._ack(o.oseq, now, messages.ST_REJECTED,
                                 "replayed order %d (%d pending)" % (o.oseq, p.oseq), None)
            self.pending = o
            return None
        return await self._execute(o, now)

    async def _execute(self, o, now):
        self.regs.order_applied(o.oseq, now)  # persisted: a replay after reboot is refused
        self.pending = None
        # the fail-safe clock restarts when an order takes effect, not when one arrives: orders
        # that never open (a board clock far behind the coordinator's) must not hold it off
        self.last_valid = now
        b, e, p, relays, why = self.limits.apply_limits(o)
        applied = await self.act.apply(b, e, p, relays)
        self.failsafe = False
        status = messages.ST_CLAMPED if why else messages.ST_APPLIED
        return self._ack(o.oseq, now, status, why, applied)

    async def tick(self, now):
        """Called every second or so: opens pending windows, and falls back to the safe
        defaults when no valid order took effect for two intervals. Returns an ack to send or
        None. Awaited, as ``handle``."""
        o = self.pending
        if o is not None and now >= o.valid_from:
            if now < o.valid_until:
                return await self._execute(o, now)
            # the window passed before it opened (the clock stepped forward, e.g. NTP): setpoints
            # for an interval long gone are refused like a stale order that arrives late
            self.pending = None
            self.rejected += 1
            return self._ack(o.oseq, now, messages.ST_REJECTED,
                             "stale: expired %d s ago" % (now - o.valid_until), None)
        if self.last_valid is None:
            self.last_valid = now
        if not self.failsafe and now - self.last_valid >= 2 * self.interval_s:
            lim = self.limits
            applied = await self.act.apply(lim.safe_bat_w, lim.safe_ev_ma, lim.safe_pv_limit_w,
                                           lim.safe_relays)
            self.failsafe = True
            return self._ack(self.regs.last_oseq, now, messages.ST_FAILSAFE,
                             "no valid order for 2 intervals", applied)
        return None

    def _ack(self, oseq, now, status, reason, applied):
        if applied is None:
            applied = self.act.state()
        b, e, p, relays = applied
        ack = messages.Ack(board=self.board, oseq=oseq, ts=now, status=status, reason=reason,
                           bat_w=b, ev_ma=e, pv_limit_w=p, relay_state=relays)
        return self.ack_topic, frame.seal(ack, self.ack_topic, self.key)


def _short(e):
    s = str(e)
    out = []
    for c in s[:48]:
        out.append(c if " " <= c <= "~" else "?")
    return "".join(out)
