# The board's actuators behind one `apply`: relays (GPIO), battery inverter setpoint and PV export
# limit (Modbus RTU holding registers), EV charger current (IEC 61851 control-pilot PWM duty).
# Values arrive already clamped to the board's limits (orders.Limits); this layer only drives
# the hardware and reports what it really set. A device that fails keeps its last known value
# in the report, so an Ack never claims a setpoint that was not applied. ``apply`` is awaited:
# a Modbus write yields to the event loop while the inverter answers (up to its 200 ms timeout
# when it is silent), and one ``apply`` runs at a time (the order path and the fail-safe run in
# two tasks).
#
# A PV export limit given to a SunSpec inverter goes to its output limit (WMaxLimPct), which caps
# what the inverter makes, not what leaves the connection: set to the export limit alone it would
# also curtail what the house uses itself. So the output limit follows the house's load: at every
# meter poll (``follow``) it is the export limit + the load (the inverter's AC power + the grid
# import the board meters), rewritten when it moved by more than 2 % of WMax. Without a load
# (the meter faulted, the inverter's power unreadable) it falls back to the export limit itself:
# the export never exceeds the limit, the house then draws from the grid (for 30 polls when the
# inverter's power could not be read, so that a silent inverter is not asked every second). A
# hand-listed register is the device's own export limit and gets the limit as it is.
import asyncio

from errors import DriverError

# full PWM duty (duty_u16) is the literal 65535 below: a named global would cost the board a
# qstr and a module dict entry


def pilot_duty_u16(ma):
    """IEC 61851-1 pilot duty for a current limit: 6-51 A -> duty% = A / 0.6; 51-80 A ->
    duty% = A / 2.5 + 64; 0 -> 100% (no charging allowed, the pilot stays at +12 V / 100 % in
    state B). Rounded down: the EV never reads more than the limit."""
    if ma <= 0:
        return 65535
    if ma > 51_000:
        return ((ma + 160_000) * 65535) // 250_000  # duty = (ma / 2500 + 64) / 100
    return (ma * 65535) // 60_000  # duty = (ma / 1000) / 0.6 / 100


class Actuators:
    def __init__(self, relays=(), modbus=None, battery=None, pv=None, ev_pwm=None):
        """``relays``: Pin-like outputs; ``battery``/``pv``: dicts with ``addr``, ``reg`` and
        optional ``scale_w`` (W per register unit) for ``modbus`` (a ModbusMaster);
        ``ev_pwm``: a PWM-like object with ``duty_u16(v)``."""
        self.relays = relays
        self.modbus = modbus
        self.battery = battery
        self.pv = pv
        self.ev_pwm = ev_pwm
        self.bat_w = 0 if battery else None
        self.pv_limit_w = None
        self.ev_ma = 0 if ev_pwm else None
        self.relay_state = 0
        self.faults = 0
        self.busy = False  # an apply is under way (waiting for an inverter)
        self.ss = {}  # "battery"/"pv" -> drivers.sunspec.SunSpec, set by the hardware layer
        self.pv_e = None  # the export limit in force when it goes to a SunSpec output limit
        self.pv_out = 0  # the output limit last set on that inverter (W)
        self.pv_skip = 0  # meter polls to leave out before asking the inverter's power again

    async def _write(self, dev, watts):
        bat = dev is self.battery
        ss = self.ss.get("battery" if bat else "pv")
        if ss is not None:  # the SunSpec model first; the hand-listed register as the fallback
            if not bat:
                self.pv_e = None  # unless the model takes it (below)
            v = await ss.write(bat, watts)
            if v is not None:
                if bat:
                    return v
                self.pv_e, self.pv_out = watts, v  # the load is added at the next meter poll
                return watts
        if "reg" not in dev:
            raise DriverError("no register for this setpoint")
        scale = dev.get("scale_w", 1)
        # rounded towards zero: a negative setpoint floored would go past the discharge limit
        v = watts // scale if watts >= 0 else -(-watts // scale)
        await self.modbus.write_register(dev["addr"], dev["reg"], v)
        return v * scale

    async def apply(self, bat_w, ev_ma, pv_limit_w, relays):
        while self.busy:  # another task's apply: this one's setpoints go after it, whole
            await asyncio.sleep_ms(5)
        self.busy = True
        try:
            if self.battery is not None and bat_w is not None:
                try:
                    self.bat_w = await self._write(self.battery, bat_w)
                except DriverError:
                    self.faults += 1
            if self.pv is not None and pv_limit_w is not None:
                try:
                    self.pv_limit_w = await self._write(self.pv, pv_limit_w)
                except DriverError:
                    self.faults += 1
            if self.ev_pwm is not None and ev_ma is not None:
                self.ev_pwm.duty_u16(pilot_duty_u16(ev_ma))
                self.ev_ma = ev_ma
            for i, pin in enumerate(self.relays):
                pin.value((relays >> i) & 1)
            self.relay_state = relays & ((1 << len(self.relays)) - 1)
        finally:
            self.busy = False
        return self.state()

    def state(self):
        return self.bat_w, self.ev_ma, self.pv_limit_w, self.relay_state

    async def follow(self, p_w):
        """At a meter poll: the SunSpec inverter's output limit to the export limit + the house's
        load, ``p_w`` being the grid power the board meters (W, + import; None when the meter
        faulted). Nothing to do (no Modbus traffic) without such a limit or while it does not
        bind; skipped while an ``apply`` is under way (it sets the limit itself)."""
        e = self.pv_e
        ss = self.ss.get("pv")
        if e is None or ss is None or self.busy or (e >= ss.wmax and self.pv_out >= ss.wmax):
            return
        if self.pv_skip:  # the inverter's power was unreadable: the limit alone for a while
            self.pv_skip -= 1
            return
        self.busy = True
        try:
            inv = None if p_w is None else await ss.ac_power()
            if inv is None and p_w is not None:  # not asked again at every poll (a silent
                self.pv_skip = 30  # inverter would hold the metering task for its timeout)
            out = min(e + max(inv + p_w, 0) if inv is not None else e, ss.wmax)
            if abs(out - self.pv_out) >= max(ss.wmax // 50, 20):
                self.pv_out = await ss.write(False, out)
        except DriverError:
            self.faults += 1
        finally:
            self.busy = False
