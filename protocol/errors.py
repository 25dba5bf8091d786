"""Exceptions of the wire protocol: one root, narrow subclasses with readable reasons.

Every rejection carries a short machine-readable ``code`` (used for counters and logs) and
a message a person can read. Runs unchanged on CPython and MicroPython.
"""


class ProtocolError(Exception):
    """Root of every error raised by ``protocol``."""

    code = "protocol"


class DecodeError(ProtocolError):
    """Bytes are not a well-formed, canonical peergrid frame."""

    code = "malformed"


class OversizeError(DecodeError):
    """A frame, string or container is larger than the protocol allows."""

    code = "oversize"


class FieldError(ProtocolError):
    """A message field is missing, of the wrong type or out of range."""

    code = "bad_field"


class UnknownTypeError(DecodeError):
    """The message type id is not defined in this protocol version."""

    code = "unknown_type"


class TopicError(ProtocolError):
    """The MQTT topic is malformed or does not match the message it carries."""

    code = "wrong_topic"


class BadKeyError(ProtocolError):
    """A key has the wrong length or is not a valid curve point."""

    code = "bad_key"


class SignatureError(ProtocolError):
    """The signature does not verify for this key, topic and message."""

    code = "bad_signature"
