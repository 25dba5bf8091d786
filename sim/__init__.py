"""The peergrid simulator: virtual boards, profiles, grid models, scenarios and faults.

Modules: ``scenario`` (TOML scenarios, sim/scenarios/), ``profiles`` (household load, PV, EV,
battery physics), ``board`` (a virtual board), ``fleet`` / ``firmware_fleet`` / ``mpy_fleet`` (a
community of virtual boards, of the real firmware in-process, of MicroPython processes),
``coordinator`` (the real coordinator services on simulated time, killable), ``brokers`` (and
``mosquitto``, the one the tests start too), ``faults``, ``attacks`` (frames a coordinator must
refuse), ``run`` (one run in lockstep), ``invariants``, ``metrics``, ``gridflow``, ``report`` and
``svg`` (what a run leaves behind), ``figures`` (a year of physics). See docs/simulation.md.
"""
