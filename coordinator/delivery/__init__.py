"""Delivery loop, first part: can the grid carry an interval's schedule?

- :mod:`.grid`: the grid model (buses, lines, transformers, connections, limits) and loaders for
  pandapower's CIGRE LV and Kerber networks and SimBench LV grids;
- :mod:`.pilot`: a pilot's grid from a small TOML file;
- :mod:`.screen`: the sensitivity screen (every interval) and its AC power-flow confirmation;
- :mod:`.schedules`: seeded random schedules and SimBench profile schedules for tests and benches;
- :mod:`.bench`: screen against runpp timing for the bench table;
- :mod:`.errors`: ``DeliveryError`` and its subclasses.

Schedules are integer W per connection bus, positive for export. pandapower (and simbench for
SimBench grids) is imported only when a grid is loaded or a screen is built.
"""

from coordinator.delivery.errors import (
    DeliveryError,
    GridDefinitionError,
    GridFileError,
    InvalidParameterError,
    PowerFlowError,
    ScheduleError,
    UnknownBusError,
    UnknownGridError,
)

__all__ = [
    "DeliveryError",
    "GridDefinitionError",
    "GridFileError",
    "InvalidParameterError",
    "PowerFlowError",
    "ScheduleError",
    "UnknownBusError",
    "UnknownGridError",
]
