"""Errors of provisioning: bad inputs, a failed tool, a broker site that is not set up, and what
can go wrong with one board on the bench (:class:`BoardError`, with a short ``kind`` that the
batch's summary and the log count)."""

from coordinator.errors import CoordinatorError


class ProvisionError(CoordinatorError):
    """A bundle, flash, enrolment or broker-configuration step cannot be done; says why."""


# BoardError kinds: what went wrong with one board
NO_PORT = "no_port"
PORT_BUSY = "port_busy"
NOT_ESP32 = "not_esp32"
NO_MICROPYTHON = "no_micropython"
TOO_OLD = "micropython_too_old"
NO_ROMFS = "no_romfs"
COPY_FAILED = "copy_failed"
MANIFEST_MISMATCH = "manifest_mismatch"
KEY_READBACK = "key_readback"
ENROL = "enrol"
NEVER_HEARD = "never_heard_from"
TOOL = "tool_failed"


class BoardError(ProvisionError):
    """One board could not be provisioned: ``kind`` (one of the constants above) and why."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
