# The real ESP32 hardware behind the same interface as fakes/hardware.py: buses and pins from
# the board file's compact form, the hardware watchdog, TLS for the broker connection.
import hal
from actuators import Actuators


class EspHardware:
    def __init__(self, cfg):
        self.cfg = cfg
        self._mb = None

    def uart(self, fe):
        return hal.make_uart(fe["uart"], fe.get("baud", 9600), fe["tx"], fe["rx"],
                             rxbuf=fe.get("rxbuf", 512), invert_rx=fe.get("invert_rx", False))

    def spi(self, fe):
        return hal.make_spi(fe.get("spi", 2), fe["sck"], fe["mosi"], fe["miso"])

    def cs(self, fe):
        return hal.make_cs(fe["cs"])

    def pin(self, fe):
        return hal.make_input(fe["pin"])

    def tls(self, broker):
        if not broker.get("tls"):
            return None
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=broker.get("ca", "ca.der"))
        return ctx

    def wdt(self):
        machine = __import__("machine")
        return machine.WDT(timeout=self.cfg.get("wdt_ms", 30_000))

    def battery_state(self):
        return None  # inverters report state of charge over Modbus reads: not wired yet

    def physics(self, now):
        pass  # the real world needs no help

    def actuators(self, cfg):
        machine = __import__("machine")
        relays = [machine.Pin(r["pin"], machine.Pin.OUT, value=0) for r in cfg.get("relays", ())]
        modbus = None
        if cfg.get("modbus"):
            from drivers.modbus_rtu import ModbusMaster

            m = cfg["modbus"]
            modbus = ModbusMaster(hal.make_uart(m["uart"], m.get("baud", 9600), m["tx"], m["rx"]))
        ev = cfg.get("ev")
        pwm = machine.PWM(machine.Pin(ev["pwm_pin"]), freq=1000, duty_u16=65535) if ev else None
        bat = cfg.get("battery")
        pv = cfg.get("pv")
        return Actuators(relays, modbus, bat.get("modbus") if bat else None,
                         pv.get("modbus") if pv else None, pwm)
