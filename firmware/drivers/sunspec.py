# SunSpec Modbus inverters and batteries on the board's RS-485 bus (drivers/modbus_rtu.py): the
# models are found from the SunSpec header ("SunS" at 40000, else at 0 or 50000, then model id and
# length, one after the other, until 0xFFFF), and the board's setpoints go to the standard points:
#
# * PV export limit: model 123 (immediate controls) WMaxLimPct, in % of WMax (model 121 basic
#   settings, else the board file's rated_w), and WMaxLim_Ena = 1;
# * battery power: model 124 (storage) StorCtl_Mod (1 charge, 2 discharge, 3 both) with InWRte /
#   OutWRte in % of WChaMax;
# * read back: state of charge from model 124 ChaState, power from model 101/102/103 W (+ is AC out
#   of the inverter: a battery's power is reported + charging, so negated).
#
# Scale factors (sunssf) are powers of ten -10..10 read from the device; one outside that (or
# 0x8000, not implemented) makes the model unusable, reported. A device without the model a
# setpoint needs leaves that setpoint to the board file's hand-listed register (the fallback) or,
# without one, counts a fault. Discovery runs from the readings task (awaited: each read yields to
# the event loop while the device answers) and is retried at the next reading when it failed; the
# setpoints' writes are awaited the same way (from the order path, actuators.py).
try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


from errors import DriverError, FrameError

_SU = const(0x5375)  # "Su"
_NS = const(0x6E53)  # "nS"
_END = const(0xFFFF)
_NA = const(0x8000)  # sunssf / int16 not implemented
_MAX_W = const(1_000_000)


def _pow(v, sf):
    """``v`` x 10^sf, rounded towards zero, in integers."""
    if sf >= 0:
        return v * 10**sf
    d = 10**-sf
    return v // d if v >= 0 else -(-v // d)


class SunSpec:
    def __init__(self, master, addr, rated_w=0):
        self.m = master
        self.addr = addr
        self.rated_w = rated_w
        self.ok = False  # discovered
        self.inv = self.ctl = self.stor = 0  # model data addresses (0: the device has none)
        self.wmax = self.ctl_sf = 0
        self.wcha = self.soc_sf = self.rte_sf = 0
        self.pend = None  # (battery?, W) asked before discovery, applied once it is done
        self.faults = 0
        self.why = ""  # the last problem, for the console

    def _fail(self, why):
        self.faults += 1
        if why != self.why:
            print("sunspec %d:" % self.addr, why)
            self.why = why

    async def _r(self, reg, signed=False):
        return await self.m.read_register(self.addr, reg, signed)

    async def _sf(self, reg):
        v = await self._r(reg, True)
        if not -10 <= v <= 10:
            raise FrameError("scale factor %d at %d" % (v, reg))
        return v

    async def discover(self):
        """Find the models; False (reported) when the device has no SunSpec map."""
        self.inv = self.ctl = self.stor = self.wmax = 0
        base = -1
        for b in (40000, 0, 50000):
            try:
                if await self._r(b) == _SU and await self._r(b + 1) == _NS:
                    base = b
                    break
            except DriverError:
                pass
        if base < 0:
            self._fail("no SunSpec header")
            return False
        p = base + 2
        for _ in range(40):  # a real map has a handful of models: bounded against a bad one
            mid = await self._r(p)
            if mid == _END:
                break
            n = await self._r(p + 1)
            d = p + 2
            try:
                if 101 <= mid <= 103 and not self.inv:
                    self.inv = d
                elif mid == 121:
                    w = _pow(await self._r(d), await self._sf(d + 20))
                    if 0 < w <= _MAX_W:
                        self.wmax = w
                elif mid == 123:
                    self.ctl_sf = await self._sf(d + 21)
                    self.ctl = d
                elif mid == 124:
                    w = _pow(await self._r(d), await self._sf(d + 16))
                    self.soc_sf = await self._sf(d + 20)
                    self.rte_sf = await self._sf(d + 23)
                    if 0 < w <= _MAX_W:
                        self.wcha = w
                        self.stor = d
                    else:
                        self._fail("storage WChaMax %d W out of range" % w)
            except FrameError as e:  # a scale factor out of range: that model is unusable
                self._fail("model %d: %s" % (mid, e))
            p = d + n
        if not self.wmax:
            self.wmax = self.rated_w
        self.ok = True
        return True

    async def poll(self, bat):
        """Discover (once), apply a setpoint asked before, and read the battery's (state of charge
        per-mille, power W + charging); None without a battery or its storage model."""
        if not self.ok:
            try:
                if not await self.discover():
                    return None
            except DriverError as e:
                self._fail("discovery: %s" % e)
                return None
            if self.pend is not None:
                b, w = self.pend
                self.pend = None
                try:
                    await self.write(b, w)
                except DriverError as e:
                    self._fail("setpoint: %s" % e)
        if not bat or not self.stor:
            return None
        soc = p = None
        try:
            v = _pow(await self._r(self.stor + 6) * 10, self.soc_sf)  # % -> per-mille
            if 0 <= v <= 1000:
                soc = v
            else:
                self._fail("state of charge %d per-mille out of range" % v)
        except DriverError:
            pass
        if self.inv:
            try:
                w = _pow(await self._r(self.inv + 12, True), await self._sf(self.inv + 13))
                if -_MAX_W <= w <= _MAX_W:
                    p = -w
            except DriverError:
                pass
        return soc, p

    async def write(self, bat, watts):
        """Apply a battery power (W, + charge) or a PV export limit (W): the W really set, or
        None when the device lacks the model (the caller falls back to its registers); raises
        DriverError when the device did not take it. Each register write is awaited (the loop
        runs while the device answers); the registers of one setpoint go whole, one after the
        other (drivers/modbus_rtu.py: the bus passes to another task only between them when
        this one yields, which it does not)."""
        if not self.ok:
            self.pend = (bat, watts)
            raise DriverError("sunspec device not discovered yet")
        m, a = self.m, self.addr
        if bat:
            d = self.stor
            if not d:
                return None
            mx = self.wcha
            w = min(abs(watts), mx)
            raw = _pow(w * 100, -self.rte_sf) // mx  # % of WChaMax in the device's steps
            await m.write_register(a, d + 3, 1 if watts > 0 else 2 if watts < 0 else 3)  # StorCtl_Mod
            if watts >= 0:
                await m.write_register(a, d + 11, raw)  # InWRte
            if watts <= 0:
                await m.write_register(a, d + 10, raw)  # OutWRte
            got = _pow(raw * mx, self.rte_sf) // 100
            return got if watts >= 0 else -got
        d = self.ctl
        mx = self.wmax
        if not d or not mx:
            return None
        raw = _pow(min(max(watts, 0), mx) * 100, -self.ctl_sf) // mx  # WMaxLimPct
        await m.write_register(a, d + 3, raw)
        await m.write_register(a, d + 7, 1)  # WMaxLim_Ena
        return _pow(raw * mx, self.ctl_sf) // 100

def attach(act, master, cfg):
    """The SunSpec devices the board file names (``[pv] sunspec``, ``[battery] sunspec``: their
    slave addresses; one device for both when they are the same), set on the actuators
    (``act.ss``); the dict, empty without any."""
    by = {}
    for k in ("battery", "pv"):
        d = cfg.get(k) or {}
        a = d.get("sunspec")
        if a:
            if a not in by:
                by[a] = SunSpec(master, a, (cfg.get("pv") or {}).get("rated_w", 0))
            act.ss[k] = by[a]
            if getattr(act, k) is None:  # no hand-listed register: the SunSpec model alone
                setattr(act, k, {})
    return act.ss


async def state(ss, bat):
    """Poll every SunSpec device (discovery, a setpoint waiting for it); the battery's (state of
    charge, power) from the battery's device, None without one."""
    out = None
    for k in ss:
        st = await ss[k].poll(bat if k == "battery" else None)
        if k == "battery":
            out = st
    return out
