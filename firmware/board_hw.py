# The real ESP32 hardware behind the same interface as fakes/hardware.py: buses and pins from
# the board file's compact form, the hardware watchdog, TLS for the broker connection.
from actuators import Actuators


class EspHardware:
    def __init__(self, cfg):
        self.cfg = cfg
        self._mb = None
        self.last = 0  # board time of the last NTP request made from physics()

    def uart(self, fe):
        return make_uart(fe["uart"], fe.get("baud", 9600), fe["tx"], fe["rx"],
                             rxbuf=fe.get("rxbuf", 512), invert_rx=fe.get("invert_rx", False))

    def spi(self, fe):
        return make_spi(fe.get("spi", 2), fe["sck"], fe["mosi"], fe["miso"])

    def cs(self, fe):
        return make_cs(fe["cs"])

    def pin(self, fe):
        return make_input(fe["pin"])

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
        """(state of charge per-mille, power W) as the battery inverter reports it over Modbus,
        from the registers named in the board file's [battery] section (drivers/modbus_rtu.py
        battery_state); None without a battery. Called for every reading: two register reads,
        ~20 ms each at 9600 baud, at most the master's timeout each when the inverter is silent."""
        bat = self.cfg.get("battery")
        if self._mb is None or not bat:
            return None
        from drivers.modbus_rtu import battery_state

        return battery_state(self._mb, bat)

    def physics(self, now):
        """Called every poll with the board's time. The real world needs no help, but the clock
        does: one NTP request at boot is not enough. If it failed (Wi-Fi back before the internet
        link after a power cut) every reading would be stamped in 2000, which the coordinator
        refuses, and every order held as not yet valid: ask again once a minute until the clock
        is set. Once set, the crystal drifts (10-20 ppm: minutes a year, past the coordinator's
        5-minute bound for readings from the future): set it again every 6 hours."""
        if now - self.last >= (60 if now < 1_600_000_000 else 21_600):
            self.last = now
            try:
                import ntptime

                ntptime.settime()
            except Exception as e:
                print("peergrid: no NTP time yet:", repr(e))

    def actuators(self, cfg):
        machine = __import__("machine")
        relays = [machine.Pin(r["pin"], machine.Pin.OUT, value=0) for r in cfg.get("relays", ())]
        modbus = None
        if cfg.get("modbus"):
            from drivers.modbus_rtu import ModbusMaster

            m = cfg["modbus"]
            modbus = ModbusMaster(make_uart(m["uart"], m.get("baud", 9600), m["tx"], m["rx"]))
            self._mb = modbus  # shared with battery_state(): one master per RS-485 bus
        ev = cfg.get("ev")
        pwm = machine.PWM(machine.Pin(ev["pwm_pin"]), freq=1000, duty_u16=65535) if ev else None
        bat = cfg.get("battery")
        pv = cfg.get("pv")
        return Actuators(relays, modbus, bat.get("modbus") if bat else None,
                         pv.get("modbus") if pv else None, pwm)


# --- buses (never called in tests: ``machine`` is a stub on the unix port) ---


def _machine():
    # Imported lazily and by name: CPython (simulator) has no ``machine``, and the type check
    # of firmware/ should not drag in the ESP32 ``machine`` stub, which does not check clean.
    return __import__("machine")


def make_uart(uart_id, baudrate, tx, rx, rxbuf=512, invert_rx=False):
    """A ``machine.UART`` in 8N1, non-blocking reads (timeout 0).

    PZEM-004T: ``make_uart(2, 9600, tx, rx)``.
    DSMR 5 P1: ``make_uart(1, 115200, tx, rx, rxbuf=2048, invert_rx=True)`` -- the P1 data
    line is open collector and logically inverted unless the board inverts it in hardware;
    a DSMR 5 meter sends up to ~1 kB every second, so give the driver a big rxbuf.
    """
    machine = _machine()

    kw = {}
    if invert_rx:
        kw["invert"] = machine.UART.INV_RX
    return machine.UART(
        uart_id,
        baudrate=baudrate,
        bits=8,
        parity=None,
        stop=1,
        tx=tx,
        rx=rx,
        rxbuf=rxbuf,
        timeout=0,
        **kw,
    )


def make_spi(spi_id, sck, mosi, miso, baudrate=200_000, polarity=1, phase=1):
    """A ``machine.SPI`` for the ATM90E32 (mode 3 by default, 8-bit, MSB first)."""
    machine = _machine()

    return machine.SPI(
        spi_id,
        baudrate=baudrate,
        polarity=polarity,
        phase=phase,
        bits=8,
        firstbit=machine.SPI.MSB,
        sck=machine.Pin(sck),
        mosi=machine.Pin(mosi),
        miso=machine.Pin(miso),
    )


def make_cs(pin_id):
    """Active-low chip-select output, idle high."""
    machine = _machine()

    return machine.Pin(pin_id, machine.Pin.OUT, value=1)


def make_input(pin_id, pull_up=True):
    """Input pin (e.g. an S0 open-collector output with the board's pull-up)."""
    machine = _machine()

    if pull_up:
        return machine.Pin(pin_id, machine.Pin.IN, machine.Pin.PULL_UP)
    return machine.Pin(pin_id, machine.Pin.IN)
