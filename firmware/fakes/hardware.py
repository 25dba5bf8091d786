# Fake board hardware for tests and the simulator: the front end's fake device (speaking the
# chip's byte protocol), actuators on fake pins and a fake Modbus slave, a watchdog, and the
# physics hook that feeds a power profile into the fake meter as simulated time passes.
from actuators import Actuators


class FakePin:
    def __init__(self):
        self.v = 0
        self.handler = None

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v

    def irq(self, handler, trigger):
        self.handler = handler


class FakePwm:
    def __init__(self):
        self.duty = None

    def duty_u16(self, v=None):
        if v is not None:
            self.duty = v
        return self.duty


class FakeWdt:
    def __init__(self):
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class FakeHardware:
    def __init__(self, cfg, power_w):
        """``power_w(now)``: net power at the meter in W (+ import, - export)."""
        self.cfg = cfg
        self.power_w = power_w
        self.last = None
        self.chip = cfg["frontend"]["chip"]
        self.dev = None
        self.slave = None  # the fake Modbus slave, made when the board has Modbus setpoints
        self.pins = [FakePin() for _ in cfg.get("relays") or ()]
        self.pwm = FakePwm()
        self.dog = FakeWdt()
        self.acc = [0, 0]  # mW*s not yet a whole mWh (import, export)

    def _fake(self):
        if self.dev is None:
            c = self.chip
            if c == "pzem004t":
                from fakes.pzem004t import FakePzemUart

                self.dev = FakePzemUart()
            elif c == "dsmr_p1":
                from fakes.dsmr_p1 import FakeP1Port

                self.dev = FakeP1Port()
            elif c == "atm90e32":
                from fakes.atm90e32 import FakeAtm90e32

                self.dev = FakeAtm90e32()
            else:
                raise ValueError("no fake for %s" % c)
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

    def battery_state(self):
        return None

    def actuators(self, cfg):
        bat = cfg.get("battery")
        pv = cfg.get("pv")
        ev = cfg.get("ev")
        master = None
        if bat or pv:  # imported only when needed: the fakes share the board's small heap
            from drivers.modbus_rtu import ModbusMaster

            from fakes.modbus_rtu import FakeModbusSlave

            self.slave = FakeModbusSlave(addr=1)
            master = ModbusMaster(self.slave)
        return Actuators(
            relays=self.pins,
            modbus=master,
            battery=bat.get("modbus") if bat else None,
            pv=pv.get("modbus") if pv else None,
            ev_pwm=self.pwm if ev else None,
        )

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
        dev = self._fake()
        if self.chip == "pzem004t":
            dev.set_state(power_mw=abs(p) * 1000 if p > 0 else 0, voltage_mv=230_000)
            if i == 0:
                dev.add_energy_mwh(mwh)
        elif self.chip == "dsmr_p1":
            dev.add_energy_mwh(import_mwh=mwh if i == 0 else 0, export_mwh=mwh if i else 0)
            dev.power_import_w = p if p > 0 else 0
            dev.power_export_w = -p if p < 0 else 0
            dev.emit()
        elif self.chip == "atm90e32":
            dev.add_energy(0, mwh if i == 0 else -mwh)
            dev.set_phase(0, voltage_mv=230_000, power_w=p)
