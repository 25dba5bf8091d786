"""Exceptions of the coordinator: one root, narrow subclasses."""


class CoordinatorError(Exception):
    """Root of every error raised by ``coordinator``."""


class MqttError(CoordinatorError):
    """The broker cannot be reached or refused an operation."""


class BrokerError(CoordinatorError):
    """The embedded broker could not start or stop."""


class RejectedMessage(CoordinatorError):
    """An inbound message was refused; ``code`` names the reason for counters and logs."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
