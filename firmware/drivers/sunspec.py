# SunSpec Modbus inverters and batteries on the board's RS-485 bus (drivers/modbus_rtu.py): the
# models are found from the SunSpec header ("SunS" at 40000, else at 0 or 50000, then model id and
# length, one after the other, until 0xFFFF), and the board's setpoints go to the standard points.
# The "legacy" models come first when the device has them; the DER models (IEEE 1547-2018: 701
# measurement, 702 capacity, 704 AC controls, 802 battery) stand in for the ones it lacks:
#
# * PV export limit: model 123 (immediate controls) WMaxLimPct, in % of WMax (model 121 basic
#   settings, else the board file's rated_w), and WMaxLim_Ena = 1; without 123, model 704
#   WMaxLimPct in % of WMax (702 WMaxRtg, else 121, else rated_w) and WMaxLimPctEna = 1;
# * battery power: model 124 (storage) StorCtl_Mod (1 charge, 2 discharge, 3 both) with InWRte /
#   OutWRte in % of WChaMax; without 124, model 704 WSetMod = 1 (watts), WSet (int32, + is the
#   DER generating: discharging, so the board's + charging is negated; both registers in one
#   request, function 16) and WSetEna = 1, within 702 WChaRteMaxRtg / WDisChaRteMaxRtg;
# * read back: state of charge from model 124 ChaState (else 802 SoC); power from model 802 W
#   (its sign not specified: |W| with the sign of ChaSt, + charging, - discharging, 0 otherwise)
#   when the device implements W, W_SF and ChaSt, else from model 101/102/103 W (else 701 W; + is
#   AC out of the inverter, so negated: on a hybrid inverter that includes the PV's output).
#   ``ac_power`` reads that AC W alone.
#
# Scale factors (sunssf) are powers of ten -10..10 read from the device; one outside that (or
# 0x8000, not implemented) makes the model unusable, reported (704: the function whose scale
# factor it is). A device without the model a setpoint needs leaves that setpoint to the board
# file's hand-listed register (the fallback) or, without one, counts a fault. Discovery runs from
# the readings task (awaited: each read yields to the event loop while the device answers) and is
# retried at the next reading when it failed; the setpoints' writes are awaited the same way (from
# the order path, actuators.py). Point offsets count from the first register after a model's id
# and length, as the SunSpec model definitions list the points.
try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


from errors import BusTimeout, DriverError, FrameError

_SU = const(0x5375)  # "Su"
_NS = const(0x6E53)  # "nS"
_END = const(0xFFFF)
_NI = const(0xFFFF)  # uint16 not implemented
_NA = const(0x8000)  # sunssf / int16 not implemented
_MAX_W = const(1_000_000)
# point offsets: 101-103 inverter
_I_W = const(12)  # W; W_SF follows it
# 121 basic settings
_S_WMAX = const(0)
_S_WMAX_SF = const(20)
# 123 immediate controls
_L_PCT = const(3)  # WMaxLimPct
_L_ENA = const(7)  # WMaxLim_Ena
_L_SF = const(21)  # WMaxLimPct_SF
# 124 storage
_T_WCHA = const(0)  # WChaMax
_T_MOD = const(3)  # StorCtl_Mod
_T_SOC = const(6)  # ChaState
_T_OUT = const(10)  # OutWRte
_T_IN = const(11)  # InWRte
_T_WCHA_SF = const(16)
_T_SOC_SF = const(20)
_T_RTE_SF = const(23)  # InOutWRte_SF
# 701 DER AC measurement
_M_W = const(8)
_M_W_SF = const(114)
# 702 DER capacity
_C_WMAX = const(0)  # WMaxRtg
_C_CHA = const(8)  # WChaRteMaxRtg
_C_DIS = const(9)  # WDisChaRteMaxRtg
_C_W_SF = const(43)
# 704 DER AC controls
_D_ENA = const(12)  # WMaxLimPctEna
_D_PCT = const(13)  # WMaxLimPct
_D_WENA = const(20)  # WSetEna
_D_WMOD = const(21)  # WSetMod (1: watts)
_D_WSET = const(22)  # WSet, int32: high word first
_D_PCT_SF = const(52)  # WMaxLimPct_SF
_D_WSET_SF = const(53)
# 802 battery
_B_SOC = const(9)
_B_CHAST = const(14)  # ChaSt: 3 discharging, 4 charging; off, empty, full, holding, testing
_B_W = const(45)  # W, int16: its sign not specified
_B_SOC_SF = const(54)
_B_W_SF = const(61)


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
        # the registers used (0: the device has no usable model for it): AC power W, the output
        # limit (WMaxLimPct of 123 or 704) and its enable, the storage model (124), the DER
        # controls (704) when they take the battery's WSet, the state of charge (124 or 802)
        self.pw = self.ctl = self.ena = self.stor = self.der = self.soc = 0
        self.pw_sf = None  # W's scale factor (701, static); None: read with W (101-103)
        self.bw = self.bw_sf = 0  # the battery's power: 802 W (0: not implemented), its W_SF
        self.wmax = self.ctl_sf = 0
        # the battery's limits, W: 124 WChaMax (both ways), or 702's charge / discharge ratings
        self.wcha = self.wdis = self.soc_sf = self.rte_sf = 0  # rte_sf: 124 InOutWRte_SF or 704 WSet_SF
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

    async def _sf(self, reg, mid=0):
        """The scale factor at ``reg``; one out of -10..10 (0x8000: not implemented) raises
        FrameError or, with ``mid``, is reported (model ``mid`` unusable) and gives None."""
        v = await self._r(reg, True)
        if -10 <= v <= 10:
            return v
        if not mid:
            raise FrameError("scale factor %d at %d" % (v, reg))
        self._fail("model %d: scale factor %d at %d" % (mid, v, reg))
        return None

    async def _rtg(self, reg, sf):
        """A uint16 rating (W): 0 when not implemented or out of range."""
        v = await self._r(reg)
        w = _pow(v, sf)
        return w if v != _NI and 0 < w <= _MAX_W else 0

    async def discover(self):
        """Find the models; False (reported) when the device has no SunSpec map."""
        self.pw = self.ctl = self.stor = self.der = self.soc = self.wmax = self.wcha = self.wdis = 0
        self.bw = 0
        base = -1
        for b in (40000, 0, 50000):
            try:
                if await self._r(b) == _SU and await self._r(b + 1) == _NS:
                    base = b
                    break
            except BusTimeout:  # the device does not answer at all: no use asking at the others
                raise
            except DriverError:  # an exception reply or a garbled one: not there
                pass
        if base < 0:
            self._fail("no SunSpec header")
            return False
        cap = der = bat = 0  # the 702, 704 and 802 data addresses, used below when needed
        p = base + 2
        for _ in range(40):  # a real map has a handful of models: bounded against a bad one
            mid = await self._r(p)
            if mid == _END:
                break
            n = await self._r(p + 1)
            d = p + 2
            try:
                if 101 <= mid <= 103:
                    if not self.pw or self.pw_sf is not None:  # the first; before a 701
                        self.pw, self.pw_sf = d + _I_W, None
                elif mid == 701:
                    if not self.pw:
                        self.pw_sf = await self._sf(d + _M_W_SF)
                        self.pw = d + _M_W
                elif mid == 702:
                    cap = d
                elif mid == 704:
                    der = d
                elif mid == 802:
                    bat = d
                elif mid == 121:
                    w = _pow(await self._r(d + _S_WMAX), await self._sf(d + _S_WMAX_SF))
                    if 0 < w <= _MAX_W:
                        self.wmax = w
                elif mid == 123:
                    self.ctl_sf = await self._sf(d + _L_SF)
                    self.ctl, self.ena = d + _L_PCT, d + _L_ENA
                elif mid == 124:
                    w = _pow(await self._r(d + _T_WCHA), await self._sf(d + _T_WCHA_SF))
                    self.soc_sf = await self._sf(d + _T_SOC_SF)
                    self.rte_sf = await self._sf(d + _T_RTE_SF)
                    if 0 < w <= _MAX_W:
                        self.wcha = w
                        self.stor = d
                        self.soc = d + _T_SOC
                    else:
                        self._fail("storage WChaMax %d W out of range" % w)
            except FrameError as e:  # a scale factor out of range: that model is unusable
                self._fail("model %d: %s" % (mid, e))
            p = d + n
        if bat:  # the battery's own power, which no legacy model has
            s = await self._r(bat + _B_W_SF, True)
            if -10 <= s <= 10:  # not implemented (0x8000): the inverter's AC power instead
                self.bw, self.bw_sf = bat + _B_W, s
        # the DER models where the legacy ones are missing (or unusable)
        sf = None
        if cap and der and (not self.ctl or not self.stor):
            sf = await self._sf(cap + _C_W_SF, 702)
        if der and not self.ctl:
            s = await self._sf(der + _D_PCT_SF, 704)
            if s is not None:
                self.ctl_sf, self.ctl, self.ena = s, der + _D_PCT, der + _D_ENA
                if sf is not None:
                    self.wmax = await self._rtg(cap + _C_WMAX, sf) or self.wmax
        if not self.stor:
            if bat:
                s = await self._sf(bat + _B_SOC_SF, 802)
                if s is not None:
                    self.soc_sf, self.soc = s, bat + _B_SOC
            if der and sf is not None:
                c = await self._rtg(cap + _C_CHA, sf)
                w = await self._rtg(cap + _C_DIS, sf)
                if c or w:
                    s = await self._sf(der + _D_WSET_SF, 704)
                    if s is not None:
                        self.rte_sf, self.wcha, self.wdis, self.der = s, c, w, der
        if not self.wmax:
            self.wmax = self.rated_w
        self.ok = True
        return True

    async def ac_power(self):
        """The inverter's AC power, W, + out of the inverter (model 101-103 W, else 701 W): one
        register read with 701 (its scale factor is static, kept from discovery), two with
        101-103 (W_SF is read with W). None before discovery, without either model, or when the
        read fails or the value is not implemented or beyond 1 MW (counted)."""
        r = self.pw
        if not self.ok or not r:
            return None
        try:
            v = await self._r(r, True)
            sf = self.pw_sf
            if sf is None:
                sf = await self._sf(r + 1)
            w = _pow(v, sf)
            if v != -_NA and -_MAX_W <= w <= _MAX_W:
                return w
            self._fail("AC power %d x 10^%d not valid" % (v, sf))
        except DriverError as e:
            self._fail("AC power: %s" % e)
        return None

    async def poll(self, bat):
        """Discover (once), apply a setpoint asked before, and read the battery's (state of charge
        per-mille, power W + charging); None without a battery or its storage/battery model."""
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
        if not bat or not self.soc:
            return None
        soc = None
        try:
            v = _pow(await self._r(self.soc) * 10, self.soc_sf)  # % -> per-mille
            if 0 <= v <= 1000:
                soc = v
            else:
                self._fail("state of charge %d per-mille out of range" % v)
        except DriverError:
            pass
        r = self.bw
        if r:
            try:
                v = await self._r(r, True)
                st = await self._r(r + _B_CHAST - _B_W)
                p = _pow(abs(v), self.bw_sf)
                if v != -_NA and st != _NI and p <= _MAX_W:
                    return soc, p if st == 4 else -p if st == 3 else 0
            except DriverError:
                pass
        p = await self.ac_power()
        return soc, None if p is None else -p

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
            if d:
                mx = self.wcha
                w = min(abs(watts), mx)
                raw = _pow(w * 100, -self.rte_sf) // mx  # % of WChaMax in the device's steps
                await m.write_register(a, d + _T_MOD, 1 if watts > 0 else 2 if watts < 0 else 3)
                if watts >= 0:
                    await m.write_register(a, d + _T_IN, raw)
                if watts <= 0:
                    await m.write_register(a, d + _T_OUT, raw)
                got = _pow(raw * mx, self.rte_sf) // 100
                return got if watts >= 0 else -got
            d = self.der
            if not d:
                return None
            w = min(watts, self.wcha) if watts > 0 else max(watts, -self.wdis)
            raw = -_pow(w, -self.rte_sf)  # WSet: + the DER generating (discharging)
            await m.write_register(a, d + _D_WMOD, 1)  # watts
            await m.write_registers(a, d + _D_WSET, (raw >> 16) & 0xFFFF, raw & 0xFFFF)  # one request
            await m.write_register(a, d + _D_WENA, 1)
            return -_pow(raw, self.rte_sf)
        d = self.ctl
        mx = self.wmax
        if not d or not mx:
            return None
        raw = _pow(min(max(watts, 0), mx) * 100, -self.ctl_sf) // mx  # WMaxLimPct
        await m.write_register(a, d, raw)
        await m.write_register(a, self.ena, 1)  # WMaxLim_Ena (123) or WMaxLimPctEna (704)
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
    """Poll every SunSpec device once (discovery, a setpoint waiting for it); the battery's (state
    of charge, power) from the battery's device, None without one."""
    b = ss.get("battery")
    out = None if b is None else await b.poll(bat)
    p = ss.get("pv")
    if p is not None and p is not b:  # a hybrid inverter is one device: polled once
        await p.poll(None)
    return out
