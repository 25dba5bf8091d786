"""Exceptions of the meter-board firmware: one root, narrow subclasses.

Drivers never retry and never swallow a fault: they raise one of these, and the layer above
(which owns the retry and back-off policy) decides what to do. Every class carries a short
machine-readable ``code`` for counters and logs, like ``protocol.errors``.

Runs unchanged on CPython and MicroPython (no assert, no typing, no f-strings needed).
"""


class FirmwareError(Exception):
    """Root of every error raised by the firmware."""

    code = "firmware"


class DriverError(FirmwareError):
    """A metering front end or its bus did not deliver a valid result."""

    code = "driver"


class BusTimeout(DriverError):
    """The device did not answer (completely) within the driver's timeout."""

    code = "timeout"


class CrcError(DriverError):
    """A frame or telegram arrived whole but its checksum does not match."""

    code = "crc"


class FrameError(DriverError):
    """Bytes arrived but are not a well-formed frame: wrong address, function, length,
    truncated or garbled telegram, unparsable value."""

    code = "frame"


class OversizeError(FrameError):
    """A frame or telegram is longer than the driver's preallocated buffer."""

    code = "oversize"


class VerifyError(DriverError):
    """A device without framing or checksum (SPI) did not read back what it must: a written
    register, or the configuration it was given. Chip absent or reset, MISO stuck, or
    configuration lost; the owner should reconfigure."""

    code = "verify"


class DeviceError(DriverError):
    """The device answered with a well-formed error report. ``code_value`` holds the
    device's own error code (e.g. the Modbus exception code)."""

    code = "device"

    def __init__(self, msg, code_value=0):
        super().__init__(msg)
        self.code_value = code_value


class ModbusError(DeviceError):
    """A Modbus slave answered with an exception response (function | 0x80).

    ``code_value``: 1 illegal function, 2 illegal address, 3 illegal data, 4 slave error.
    """

    code = "modbus_exception"
