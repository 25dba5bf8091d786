"""Exceptions of the market: one root, ``MarketError``, with narrow subclasses.

Every message names the offending order, party or argument and the rule it breaks, so that the
interval loop can log it for a person and count it by class.
"""

from __future__ import annotations

from coordinator.errors import CoordinatorError


class MarketError(CoordinatorError):
    """Root of every error raised by ``coordinator.market``."""


class InvalidOrder(MarketError):
    """An order is malformed: bad side, energy, limit, id, feeder or kind, or not an ``Order``."""


class LimitOutOfBounds(InvalidOrder):
    """Under the ``"reject"`` limit policy: a bid above retail or an ask below the feed-in tariff."""


class DuplicateOrder(MarketError):
    """Two orders of one interval share an ``order_id``."""


class UnknownScheme(MarketError):
    """The scheme name is not one of ``coordinator.market.SCHEMES``."""


class InvalidTariff(MarketError):
    """Tariff values are out of range or inconsistent (e.g. feed-in above retail)."""


class InvalidArgument(MarketError):
    """A clearing argument is wrong: interval, limit policy, or an option the scheme does not take."""


class InvalidSharing(InvalidArgument):
    """Collective self-consumption: bad allocation keys or community price."""


class InvalidContract(InvalidArgument):
    """Bilateral contracts: malformed contract or two active contracts for one consumer."""


class MissingPrice(InvalidArgument):
    """An indexed contract needs the wholesale price of an interval that the series lacks."""


class InvalidPreference(MarketError):
    """Bidding: bad member preferences, measurement, forecast or storage state."""
