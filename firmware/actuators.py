# The board's actuators behind one `apply`: relays (GPIO), battery inverter setpoint and PV export
# limit (Modbus RTU holding registers), EV charger current (IEC 61851 control-pilot PWM duty).
# Values arrive already clamped to the board's limits (orders.Limits); this layer only drives
# the hardware and reports what it really set. A device that fails keeps its last known value
# in the report, so an Ack never claims a setpoint that was not applied. ``apply`` is awaited:
# a Modbus write yields to the event loop while the inverter answers (up to its 200 ms timeout
# when it is silent), and one ``apply`` runs at a time (the order path and the fail-safe run in
# two tasks).
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

    async def _write(self, dev, watts):
        ss = self.ss.get("battery" if dev is self.battery else "pv")
        if ss is not None:  # the SunSpec model first; the hand-listed register as the fallback
            v = await ss.write(dev is self.battery, watts)
            if v is not None:
                return v
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
