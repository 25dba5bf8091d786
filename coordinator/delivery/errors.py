"""Exceptions of the delivery loop: one root, narrow subclasses.

Every message names the file or grid, the element and the rule that was broken, so that the person
who wrote the grid description or the schedule can fix it without reading code.

DeliveryError
├── GridFileError          the TOML file cannot be read or is not TOML
├── GridDefinitionError    the description is readable but wrong (missing or unknown key, bad type)
│   ├── UnknownBusError    a line, transformer, connection or slack names a bus that does not exist
│   ├── InvalidParameterError  a value out of its range (negative ampacity, zero length, inverted band)
│   └── UnknownGridError   no benchmark grid or SimBench code of that name
├── AssetError             a board's devices or costs are described wrongly (negative power, ...)
├── ScheduleError          a schedule names an unknown bus or board, or a power that is not integer W
└── PowerFlowError         the AC power flow did not converge
"""

from __future__ import annotations

from coordinator.errors import CoordinatorError


class DeliveryError(CoordinatorError):
    """Root of every error raised by ``coordinator.delivery``."""


class GridFileError(DeliveryError):
    """A grid description file is missing, unreadable or not valid TOML."""


class GridDefinitionError(DeliveryError):
    """A grid description is readable but not a valid grid."""


class UnknownBusError(GridDefinitionError):
    """An element refers to a bus that the grid does not have."""


class InvalidParameterError(GridDefinitionError):
    """A parameter is outside its allowed range."""


class UnknownGridError(GridDefinitionError):
    """No benchmark grid or SimBench code of that name."""


class ScheduleError(DeliveryError):
    """A schedule cannot be checked against this grid."""


class PowerFlowError(DeliveryError):
    """The AC power flow did not converge (the schedule may be beyond what the grid can carry)."""


class AssetError(DeliveryError):
    """A board's flexible devices, setpoints or costs are not valid."""
