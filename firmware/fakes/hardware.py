# Fake board hardware for tests and the simulator: the front end's fake device (speaking the
# chip's byte protocol), actuators on fake pins and a fake Modbus slave (or, for a board file
# with ``[modbus] host``, a real Modbus TCP server at that address), a watchdog, a Wi-Fi
# station, and the physics hook that feeds a power profile into the fake meter as simulated time
# passes.
from actuators import Actuators


class FakePin:
    """A pin, a PWM output or a watchdog: one small class for all three keeps the board's heap."""

    def __init__(self):
        self.v = 0
        self.handler = None
        self.duty = None  # PWM duty (u16) once set
        self.feeds = 0  # watchdog feeds

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v

    def irq(self, handler, trigger):
        self.handler = handler

    def duty_u16(self, v=None):
        if v is not None:
            self.duty = v
        return self.duty

    def feed(self):
        self.feeds += 1


class FakeWlan:
    """A Wi-Fi station (network.WLAN's calls the board makes): ``up`` is the radio link; a test
    drops it, and ``connect`` brings it back after ``join`` more checks of ``isconnected``."""

    def __init__(self):
        self.up = True
        self.join = 3
        self.connects = 0
        self._left = 0

    def isconnected(self):
        if not self.up and self._left:
            self._left -= 1
            self.up = not self._left
        return self.up

    def connect(self, ssid, password):
        self.connects += 1
        self._left = self.join

    def disconnect(self):
        self.up = False


class FileRom:
    """The unix port's ROMFS partition: a file of two slots (the launcher maps it at boot, as an
    ESP32 maps its partition); writes go to the file, erasing sets a 4 KiB block to 0xFF."""

    def __init__(self, path):
        import os

        self.path = path
        self.size = os.stat(path)[6]
        self.erases = 0

    def erase(self, off):
        self.erases += 1
        ff = b"\xff" * 256  # (small: the board's heap)
        with open(self.path, "r+b") as f:
            f.seek(off)
            for _ in range(16):
                f.write(ff)

    def write(self, off, buf):
        with open(self.path, "r+b") as f:
            f.seek(off)
            f.write(buf)

    def readinto(self, off, buf):
        with open(self.path, "rb") as f:
            f.seek(off)
            f.readinto(buf)


class FakeHardware:
    def __init__(self, cfg, power_w):
        """``power_w(now)``: net power at the meter in W (+ import, - export)."""
        self.cfg = cfg
        self.power_w = power_w
        self.last = None
        self.chip = cfg["frontend"]["chip"]
        self.dev = None
        self.slave = None  # the fake Modbus slave, made when the board has Modbus setpoints (RTU)
        # the Modbus master on it (or the Modbus TCP client when the board file names a host),
        # shared by the setpoints and the battery's reads
        self.mb = None
        self.ss = None  # the SunSpec devices on it (drivers/sunspec.py), if the board file names any
        self.pins = [FakePin() for _ in cfg.get("relays") or ()]
        self.pwm = FakePin()
        self.dog = FakePin()
        self.acc = [0, 0]  # mW*s not yet a whole mWh (import, export)
        self.sta = None  # a FakeWlan once the settings name a Wi-Fi network
        self.cause = 1  # what reset_cause() reports: power on

    def _fake(self):
        if self.dev is None:  # only the board's chip's fake is loaded: it shares the board's heap
            self.dev = __import__("fakes." + self.chip, None, None, ("device",)).device()
        return self.dev

    def uart(self, fe):
        return self._fake()

    def spi(self, fe):
        return self._fake()

    def cs(self, fe):
        return self._fake().cs

    def pin(self, fe):
        return FakePin()

    def tls(self, broker):
        return None

    def wdt(self):
        return self.dog

    def wlan(self, settings):
        if settings.get("wifi") and self.sta is None:
            self.sta = FakeWlan()
        return self.sta

    def reset_cause(self):
        return self.cause

    def rom(self):
        """The ROMFS partition for updates (ota.py): romfs.part in the board's directory, if any."""
        try:
            return FileRom("romfs.part")
        except OSError:
            return None

    def largest_free(self):
        """The largest block the heap can give now, found by trying (tests only: it allocates)."""
        import gc

        if not hasattr(gc, "mem_free"):  # CPython (the simulator): no such heap
            return 0
        gc.collect()
        lo, hi = 0, gc.mem_free()
        while hi - lo > 64:
            mid = (lo + hi) // 2
            try:
                bytearray(mid)
                lo = mid
            except MemoryError:
                hi = mid
        return lo

    async def battery_state(self):
        """What the battery inverter reports, read from the fake slave through the real Modbus
        master, as EspHardware does (None without a battery): the actuators' master, so that
        its reads and the setpoints' writes take turns on the bus as on a board."""
        bat = self.cfg.get("battery")
        if self.ss:
            from drivers.sunspec import state

            st = await state(self.ss, bat)
            if st is not None:
                return st
        if self.mb is None or not bat:
            return None
        from drivers.modbus_rtu import battery_state

        return await battery_state(self.mb, bat)  # the actuators' master: one per bus

    def _master(self, m):
        """Modbus TCP to a real server when the board file names a host; else the RTU master on
        the fake slave (imported only when needed: the fakes share the board's small heap)."""
        if "host" in m:
            from drivers.modbus_tcp import ModbusTcp

            return ModbusTcp(m["host"], m.get("port", 502), m.get("timeout_ms", 1000))
        from drivers.modbus_rtu import ModbusMaster

        from fakes.modbus_rtu import FakeModbusSlave

        self.slave = FakeModbusSlave(addr=1)
        return ModbusMaster(self.slave)

    def actuators(self, cfg):
        bat = cfg.get("battery")
        pv = cfg.get("pv")
        ev = cfg.get("ev")
        master = None
        if bat or pv:
            master = self.mb = self._master(cfg.get("modbus") or {})
        act = Actuators(
            relays=self.pins,
            modbus=master,
            battery=bat.get("modbus") if bat else None,
            pv=pv.get("modbus") if pv else None,
            ev_pwm=self.pwm if ev else None,
        )
        if master is not None and ((bat or {}).get("sunspec") or (pv or {}).get("sunspec")):
            from drivers.sunspec import attach

            self.ss = attach(act, master, cfg)
        return act

    def physics(self, now):
        """Advance the fake meter to ``now`` (exact: remainders carried in mW*s)."""
        if self.last is None or now <= self.last:
            if self.last is None:
                self.last = now
                if self.chip == "dsmr_p1":
                    self._fake().emit()  # a P1 port sends a telegram every second anyway
            return
        p = self.power_w(now)
        i = 0 if p >= 0 else 1
        self.acc[i] += abs(p) * 1000 * (now - self.last)
        mwh, self.acc[i] = divmod(self.acc[i], 3600)
        self.last = now
        self._fake().physics(p, mwh if i == 0 else 0, mwh if i else 0)
