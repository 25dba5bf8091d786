"""The pricing mechanism: pure functions that clear one market interval. Integers only.

Orders in, a ``Clearing`` out; no I/O, no clock, no randomness, no floats. Energy in mWh, prices in
milli-cent per kWh (mc/kWh), money in nano-cent (mWh x mc/kWh). Every scheme is bounded by the
supplier of last resort: surplus is bought at the feed-in tariff, deficit sold at retail.

Modules: ``types`` (orders, tariff, trades, clearing), ``errors``, ``orderbook`` (checks and book
order), ``double_auction`` (pairwise / uniform / pay-as-bid), ``last_resort`` (supplier and price
bounds), ``self_consumption`` (allocation keys), ``bilateral`` (preferred producers), ``allocation``
(largest remainder), ``bidding`` (orders from preferences, meters, forecasts, storage), ``money``
(flows per party), ``schemes`` (``clear``).
"""

from coordinator.market.bidding import (
    Preferences,
    Storage,
    energy_mwh,
    ex_post_orders,
    forecast_orders,
    storage_orders,
)
from coordinator.market.bilateral import Charge, Contract, subscription_charges
from coordinator.market.double_auction import sort_and_cross_bound
from coordinator.market.errors import (
    DuplicateOrder,
    InvalidArgument,
    InvalidContract,
    InvalidOrder,
    InvalidPreference,
    InvalidSharing,
    InvalidTariff,
    LimitOutOfBounds,
    MarketError,
    MissingPrice,
    UnknownScheme,
)
from coordinator.market.last_resort import LIMIT_POLICIES
from coordinator.market.money import amounts, energy_by_order, money_flows
from coordinator.market.schemes import SCHEMES, clear
from coordinator.market.self_consumption import Sharing
from coordinator.market.types import (
    BUY,
    DSO,
    EX_ANTE,
    EX_POST,
    PLATFORM,
    SELL,
    SUPPLIER,
    Clearing,
    Order,
    Tariff,
    Trade,
    TradeRow,
    Trades,
    Unfilled,
)

__all__ = [
    "BUY",
    "DSO",
    "EX_ANTE",
    "EX_POST",
    "LIMIT_POLICIES",
    "PLATFORM",
    "SCHEMES",
    "SELL",
    "SUPPLIER",
    "Charge",
    "Clearing",
    "Contract",
    "DuplicateOrder",
    "InvalidArgument",
    "InvalidContract",
    "InvalidOrder",
    "InvalidPreference",
    "InvalidSharing",
    "InvalidTariff",
    "LimitOutOfBounds",
    "MarketError",
    "MissingPrice",
    "Order",
    "Preferences",
    "Sharing",
    "Storage",
    "Tariff",
    "Trade",
    "TradeRow",
    "Trades",
    "UnknownScheme",
    "Unfilled",
    "amounts",
    "clear",
    "energy_by_order",
    "energy_mwh",
    "ex_post_orders",
    "forecast_orders",
    "money_flows",
    "sort_and_cross_bound",
    "storage_orders",
    "subscription_charges",
]
