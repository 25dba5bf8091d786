# Cumulative import/export energy registers (mWh) that never run backwards, survive reboot with
# bounded flash wear, and can be aligned to the utility meter.
#
# Two kinds of front end feed them:
#   - counters the chip keeps itself (PZEM-004T energy, a DSMR meter's 1.8.x/2.8.x): the register
#     is a base plus the counter's advance since a persisted baseline, so nothing is lost on an
#     unclean reboot;
#   - deltas read and cleared from the chip (ATM90E32 energy registers, S0 pulses): energy since
#     the last save is lost on a power cut, at most ``save_mwh`` (the wear/loss trade-off).
# A save happens when ``save_s`` seconds or ``save_mwh`` mWh have passed since the last one, or
# when forced (clean shutdown, alignment), and only when something it holds changed: a boot, an
# idle meter or a shutdown right after a save write nothing. The sequence number is persisted as a
# ceiling, saved before the first number of each block is handed out: a reboot resumes above
# every number ever sent, so no sequence number repeats.
#
# Plausibility: a counter cannot advance faster than the most power the meter can see
# (``power_w``: 2 x the board file's largest limit, see app.py). An advance, or the count of a
# counter that went down (a reset: what it counted since), beyond ``power_w`` over the time since
# the counters last moved (plus 5 s of slack for whole-second stamps and telegram timing, plus
# 1 Wh for the counters' resolution) is refused: a CRC-valid garbled count, a replacement meter
# with a higher count. The register holds, follows the counter from its new value (as after a
# reset: nothing is added twice, a replaced meter is followed) and ``fault`` is set until the
# next reading has carried it (F_FRONTEND_FAULT). After a reboot the time runs from the last save,
# whose hour the record keeps; without a set clock at the save or at boot (and when no ``now`` is
# given) there is no bound for that step.
from errors import FirmwareError
from persist import Record

SEQ_BLOCK = 64  # sequence numbers reserved per save

# persisted: e_imp, e_exp, the chip counters they match, seq ceiling, last order seq, and the hour
# of the save (Unix time // 3600, mod 2**16, 0: unknown; was a spare 0, so older records load)
_FMT = "<QQQQIIH"


class RegisterError(FirmwareError):
    code = "registers"


class Registers:
    def __init__(self, path, save_s=300, save_mwh=50_000, power_w=100_000):
        self.rec = Record(path, _FMT)
        self.save_s = save_s
        self.save_mwh = save_mwh
        self.power_w = power_w  # the most power the meter can see: the plausibility bound
        got = self.rec.load()
        if got is None:
            got = (0, 0, 0, 0, 0, 0, 0)
        # _imp_at/_exp_at: the chip counter values that the registers correspond to
        self.e_imp, self.e_exp, self._imp_at, self._exp_at, ceiling, self.last_oseq, self._h = got
        self.seq = ceiling  # first reading after boot: above anything sent before
        self._ceiling = ceiling
        self._saved_at = None  # board time of the last save (None: none since boot)
        self._saved = self._values()
        self.aligned = False
        self.fault = False  # a counter step was refused since the last reading
        self.last = None  # board time the counters last moved (None: not since boot)

    def _values(self):
        return self.e_imp, self.e_exp, self._imp_at, self._exp_at, self._ceiling, self.last_oseq

    def _save(self, now, ceiling=None):
        if ceiling is None:
            ceiling = self._ceiling
        self._saved_at = now
        if (self.e_imp, self.e_exp, self._imp_at, self._exp_at, ceiling, self.last_oseq) == self._saved:
            return  # nothing changed: flash untouched
        h = now // 3600
        if h > 444_444:  # a set clock (after 2020-09): the bound after a reboot runs from this hour
            self._h = h & 0xFFFF
        self.rec.save(self.e_imp, self.e_exp, self._imp_at, self._exp_at, ceiling,
                      self.last_oseq, self._h)
        self._ceiling = ceiling  # only once written: numbers above it are never handed out before
        self._saved = self._values()

    def add(self, d_imp, d_exp):
        """Add energy read as deltas (mWh, both >= 0)."""
        if d_imp < 0 or d_exp < 0:
            raise RegisterError("negative energy delta %d/%d" % (d_imp, d_exp))
        self.e_imp += d_imp
        self.e_exp += d_exp

    def counters(self, imp, exp, now=None):
        """Follow absolute counters kept by the chip (mWh) read at board time ``now``. A counter
        that went down was reset (chip replaced, energy reset command): the register keeps its
        value and follows the counter from there. A step beyond the plausibility bound (see the
        top of this module) is refused and sets ``fault``."""
        hi = None  # the most energy the meter can have counted since the counters last moved
        if now is not None:
            t = self.last
            h = now // 3600
            if t is None and self._h and h > 444_444:  # the first step since boot: from the last
                t = (h - (h - self._h & 0xFFFF)) * 3600  # save (the start of its hour)
            if t is not None:
                hi = self.power_w * (max(now - t, 0) + 5) * 5 // 18 + 1000  # W x s -> mWh, + 1 Wh
            if t is None or imp != self._imp_at or exp != self._exp_at:
                self.last = now
        self.e_imp, self._imp_at = self._follow(self.e_imp, self._imp_at, imp, hi)
        self.e_exp, self._exp_at = self._follow(self.e_exp, self._exp_at, exp, hi)

    def align(self, imp, exp, now):
        """Move the registers forward to the utility meter's reading; never backwards."""
        if imp < self.e_imp or exp < self.e_exp:
            raise RegisterError("alignment to %d/%d would run the registers backwards" % (imp, exp))
        self.e_imp, self.e_exp = imp, exp
        self.aligned = True
        self._save(now)

    def next_seq(self, now):
        """Take the next sequence number (persisting a new ceiling when the block is used)."""
        if self.seq >= self._ceiling:  # persisted before it is used (a failed write raises)
            self._save(now, self.seq + SEQ_BLOCK)
        s = self.seq
        self.seq += 1
        return s

    def order_applied(self, oseq, now):
        self.last_oseq = oseq
        self._save(now)

    def maybe_save(self, now, force=False):
        """Persist if forced, or if enough time or energy has passed since the last save."""
        if self._saved_at is None:
            self._saved_at = now
        moved = (self.e_imp - self._saved[0]) + (self.e_exp - self._saved[1])
        if force or moved >= self.save_mwh or now - self._saved_at >= self.save_s:
            writes = self.rec.writes
            self._save(now)
            return self.rec.writes != writes
        return False

    def _follow(self, register, at, value, hi):
        d = value - at if value >= at else value  # the advance, or the count since a reset
        if hi is not None and d > hi:
            self.fault = True
            print("peergrid: counter step %d -> %d mWh refused (at most %d)" % (at, value, hi))
            return register, value  # held; followed from the new count
        return register + d if value >= at else register, value
