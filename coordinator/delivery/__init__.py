"""The delivery loop: can the grid carry an interval's schedule, and what each board is to do.

- :mod:`.grid`: the grid model (buses, lines, transformers, connections, limits) and loaders for
  pandapower's CIGRE LV and Kerber networks and SimBench LV grids;
- :mod:`.pilot`: a pilot's grid from a small TOML file;
- :mod:`.screen`: the sensitivity screen (every interval) and its AC power-flow confirmation;
- :mod:`.assets`: each board's flexible devices (PV, battery, EV, deferrable load) and their costs;
- :mod:`.devices`: a member's devices from its preferences, and their ranges for one interval;
- :mod:`.guard`: redispatch of those devices when a schedule breaks a limit, least cost first;
- :mod:`.redispatch`: the least-cost device changes that bring the predicted point within limits;
- :mod:`.integrator`: an integrator home's plan for its battery and EV over a horizon;
- :mod:`.flexibility`: the grid operator's flexibility market (requests, offers, orders, delivery
  verified against a baseline, payments);
- :mod:`.dispatch`: each interval's dispatch, by job (view, storage market, integrator homes,
  flexibility orders, targets, signed orders) and the step that composes them;
- :mod:`.day`: a simulated day on a benchmark grid with every kind of asset, with and without guard;
- :mod:`.schedules`: seeded random schedules and SimBench profile schedules for tests and benches;
- :mod:`.bench`: screen against runpp timing for the bench table;
- :mod:`.errors`: ``DeliveryError`` and its subclasses.

Schedules are integer W per connection bus, positive for export. pandapower (and simbench for
SimBench grids) is imported only when a grid is loaded or a screen is built.
"""

from coordinator.delivery.errors import (
    AssetError,
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
    "AssetError",
    "DeliveryError",
    "GridDefinitionError",
    "GridFileError",
    "InvalidParameterError",
    "PowerFlowError",
    "ScheduleError",
    "UnknownBusError",
    "UnknownGridError",
]
