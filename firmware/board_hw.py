# The real ESP32 hardware behind the same interface as fakes/hardware.py: buses and pins from
# the board file's compact form, the hardware watchdog, the Wi-Fi station, the reset cause, TLS
# for the broker connection.
import machine
from actuators import Actuators


class EspHardware:
    def __init__(self, cfg):
        self.cfg = cfg
        self._mb = None
        self._wdt = None
        self._ss = None  # the SunSpec devices (drivers/sunspec.py), if the board file names any

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
        ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]  # missing from the stub
        ctx.load_verify_locations(cafile=broker.get("ca", "ca.der"))
        return ctx

    def wdt(self):
        """The hardware watchdog, armed at the first call (main.py: before the network); it
        cannot be stopped again."""
        if self._wdt is None:
            self._wdt = machine.WDT(timeout=self.cfg.get("wdt_ms", 30_000))
        return self._wdt

    def wlan(self, settings):
        """The Wi-Fi station when the settings name a network (None: wired, or no radio)."""
        if not settings.get("wifi"):
            return None
        import network

        return network.WLAN(network.STA_IF)

    def reset_cause(self):
        return machine.reset_cause()

    def rom(self):
        """The ROMFS partition as two update slots (ota.py), None without one."""
        import esp32

        got = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="romfs")
        return EspRom(got[0]) if got else None

    def largest_free(self):
        """The largest free block of the ESP-IDF data heaps: what the MicroPython heap can still
        grow by, and what a TLS session or a new task can get."""
        try:
            import esp32

            return max(h[2] for h in esp32.idf_heap_info(esp32.HEAP_DATA))
        except (ImportError, AttributeError, ValueError):
            return 0

    async def battery_state(self):
        """(state of charge per-mille, power W) as the battery inverter reports it over Modbus,
        from the registers named in the board file's [battery] section (drivers/modbus_rtu.py
        battery_state); None without a battery. Called for every reading: two register reads,
        ~20 ms each at 9600 baud (a few ms over Modbus TCP), at most the master's timeout each
        when the inverter is silent, waited for without holding the event loop."""
        bat = self.cfg.get("battery")
        if self._ss:  # SunSpec devices first (discovery, then their models); registers as the fallback
            from drivers.sunspec import state

            st = await state(self._ss, bat)
            if st is not None:
                return st
        if self._mb is None or not bat:
            return None
        from drivers.modbus_rtu import battery_state

        return await battery_state(self._mb, bat)

    def physics(self, now):
        """The real world needs no help (fakes/hardware.py drives a simulated meter here)."""

    def actuators(self, cfg):
        relays = [machine.Pin(r["pin"], machine.Pin.OUT, value=0) for r in cfg.get("relays", ())]
        modbus = None
        if cfg.get("modbus"):
            # shared with battery_state(): one master per RS-485 bus, or one Modbus TCP connection
            modbus = self._mb = make_modbus(cfg["modbus"])
        ev = cfg.get("ev")
        pwm = machine.PWM(machine.Pin(ev["pwm_pin"]), freq=1000, duty_u16=65535) if ev else None
        bat = cfg.get("battery")
        pv = cfg.get("pv")
        act = Actuators(relays, modbus, bat.get("modbus") if bat else None,
                        pv.get("modbus") if pv else None, pwm)
        if modbus is not None and ((bat or {}).get("sunspec") or (pv or {}).get("sunspec")):
            from drivers.sunspec import attach

            self._ss = attach(act, modbus, cfg)
        return act


class EspRom:
    """The ROMFS partition through the partition API: 4 KiB blocks, erased and written in place
    (main.py mounts one half of it, memory-mapped, at /rom)."""

    def __init__(self, part):
        self.part = part
        self.size = part.ioctl(4, 0) * 4096  # block count x block size

    def erase(self, off):
        self.part.ioctl(6, off // 4096)

    def write(self, off, buf):
        self.part.writeblocks(off // 4096, buf, off % 4096)

    def readinto(self, off, buf):
        self.part.readblocks(off // 4096, buf, off % 4096)


# --- buses (never called in tests: the unix port's ``machine`` has no UART, SPI or WDT) ---


def make_uart(uart_id, baudrate, tx, rx, rxbuf=512, invert_rx=False):
    """A ``machine.UART`` in 8N1, non-blocking reads (timeout 0).

    PZEM-004T: ``make_uart(2, 9600, tx, rx)``.
    DSMR 5 P1: ``make_uart(1, 115200, tx, rx, rxbuf=2048, invert_rx=True)`` -- the P1 data
    line is open collector and logically inverted unless the board inverts it in hardware;
    a DSMR 5 meter sends up to ~1 kB every second, so give the driver a big rxbuf.
    """
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


def make_modbus(m):
    """The board file's [modbus] (compact form): Modbus TCP to the inverter on the LAN when it
    gives ``host`` (a numeric address), else the Modbus RTU master on the RS-485 UART."""
    if "host" in m:
        from drivers.modbus_tcp import ModbusTcp

        return ModbusTcp(m["host"], m.get("port", 502), m.get("timeout_ms", 1000))
    from drivers.modbus_rtu import ModbusMaster

    return ModbusMaster(make_uart(m["uart"], m.get("baud", 9600), m["tx"], m["rx"]))


def make_spi(spi_id, sck, mosi, miso, baudrate=200_000, polarity=1, phase=1):
    """A ``machine.SPI`` for the ATM90E32 (mode 3 by default, 8-bit, MSB first)."""
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
    return machine.Pin(pin_id, machine.Pin.OUT, value=1)


def make_input(pin_id, pull_up=True):
    """Input pin (e.g. an S0 open-collector output with the board's pull-up)."""
    if pull_up:
        return machine.Pin(pin_id, machine.Pin.IN, machine.Pin.PULL_UP)
    return machine.Pin(pin_id, machine.Pin.IN)
