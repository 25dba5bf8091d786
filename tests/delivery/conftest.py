"""Benchmark grids and their screens, loaded once per test session (SimBench takes ~3 s to load)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.delivery.grid import GridModel, load_pandapower, load_simbench
from coordinator.delivery.pilot import load_toml
from coordinator.delivery.screen import Screen

PILOT = Path(__file__).with_name("pilot.toml")
# One grid of each source: CIGRE LV, a Kerber network, and a SimBench LV grid in its 2034 scenario
# (scenario 2: more PV, heat pumps and EVs, so a sunny noon breaks limits).
GRIDS = ("cigre_lv", "kerber_landnetz_kabel_1", "1-LV-rural1--2-sw")
SIMBENCH = "1-LV-rural1--2-sw"

_grids: dict[str, GridModel] = {}
_screens: dict[tuple[str, int], Screen] = {}


def grid_by_name(name: str) -> GridModel:
    if name not in _grids:
        if name == "pilot":
            _grids[name] = load_toml(PILOT)
        elif name.startswith("1-LV-"):
            _grids[name] = load_simbench(name)
        else:
            _grids[name] = load_pandapower(name)
    return _grids[name]


def screen_by_name(name: str, corrections: int = 1) -> Screen:
    key = (name, corrections)
    if key not in _screens:
        _screens[key] = Screen(grid_by_name(name), corrections=corrections)
    return _screens[key]


@pytest.fixture(scope="session")
def cigre() -> GridModel:
    return grid_by_name("cigre_lv")


@pytest.fixture(scope="session")
def rural() -> GridModel:
    return grid_by_name(SIMBENCH)


@pytest.fixture(scope="session")
def pilot() -> GridModel:
    return grid_by_name("pilot")
