"""The package's root exception and its narrow subclasses; each message names what is wrong."""

from coordinator.errors import CoordinatorError


class P2sError(CoordinatorError):
    """A member's device change, a flexibility request or a capacity limit was refused."""


class UnknownMember(P2sError):
    """No such member."""


class BadDevice(P2sError):
    """A device or preference value is malformed or out of range (names member and field)."""


class BadRequest(P2sError):
    """A flexibility request or capacity limit is malformed or out of range (names the field)."""


class Conflict(P2sError):
    """The request overlaps one already accepted, or its id is taken."""
