"""The pilot TOML loader: a good grid, and bad input with the error a person needs to fix it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coordinator.delivery.errors import (
    GridDefinitionError,
    GridFileError,
    InvalidParameterError,
    UnknownBusError,
)
from coordinator.delivery.grid import GridModel
from coordinator.delivery.pilot import load_toml, parse_toml
from coordinator.delivery.schedules import random_schedules
from coordinator.delivery.screen import Screen
from tests.delivery.conftest import PILOT

TEXT = PILOT.read_text()


def test_pilot_grid(pilot: GridModel) -> None:
    assert pilot.name == "pilot"
    assert [b.name for b in pilot.buses] == ["MV", "LV0", "A1", "A2", "B1", "B2", "C1"]
    assert pilot.connection_buses == ("A1", "A2", "B1", "B2", "C1")  # bus order
    lines = {ln.name: ln for ln in pilot.lines}
    assert lines["LV0-A1"].length_km == pytest.approx(0.15) and lines["LV0-A1"].max_i_a == 270.0  # std type
    assert lines["B1-B2"].max_i_a == 142.0 and lines["B1-B2"].r_ohm_per_km == 0.641
    assert pilot.transformers[0].sn_kva == 250.0
    conns = {c.board: c for c in pilot.connections}
    assert conns["house-02"].phase == "L1" and conns["house-02"].export_limit_w == 4600
    assert conns["house-04"].phase is None and conns["house-04"].import_limit_w is None
    assert pilot.peak_load_w["A2"] == 8000 and pilot.pv_w["A2"] == 4600
    assert pilot.board_bus("farm") == "C1"


def test_pilot_screen_matches_ac(pilot: GridModel) -> None:
    scr = Screen(pilot)
    for kind in ("pv", "load"):
        for s in random_schedules(pilot, 10, seed=3, kind=kind):
            ac, pred = scr.ac(s), scr.predict(s)
            assert np.abs(ac.vm_pu - pred.vm_pu).max() < 0.002
            assert scr.check(s).ok == (not scr.flags(ac, margins=False))


def test_load_toml_file_errors(tmp_path: Path) -> None:
    with pytest.raises(GridFileError, match="cannot read"):
        load_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe name")
    with pytest.raises(GridFileError, match="not UTF-8"):
        load_toml(bad)


def _replace(old: str, new: str) -> str:
    assert old in TEXT, old
    return TEXT.replace(old, new, 1)


BAD = [
    # (TOML text, error class, what the message must say)
    ('name = "pilot"\n[[bus]\nname = "x"', GridFileError, r"pilot.toml: not valid TOML: .*line 2"),
    (_replace('to_bus = "A2"', 'to_bus = "A9"'), UnknownBusError, r"line 'A1-A2': to_bus 'A9' is not a bus"),
    (
        _replace('bus = "C1"\nimport', 'bus = "D7"\nimport'),
        UnknownBusError,
        r"connection 'farm': bus 'D7' is not a bus",
    ),
    (_replace('bus = "MV"\nvm_pu', 'bus = "HV"\nvm_pu'), UnknownBusError, r"slack: bus 'HV' is not a bus"),
    (
        _replace("max_i_a = 142", "max_i_a = -142"),
        InvalidParameterError,
        r"line 'B1-B2': max_i_a must be greater than 0",
    ),
    (
        _replace("length_m = 120", "length_m = 0"),
        InvalidParameterError,
        r"line 'A1-A2': length_m must be greater",
    ),
    (_replace("length_m = 120", "lenght_m = 120"), GridDefinitionError, r"line #2: unknown key 'lenght_m'"),
    (_replace("length_m = 120", "length_m = 120\nlength_km = 0.12"), GridDefinitionError, "exactly one of"),
    (
        _replace('std_type = "NAYY 4x50 SE"', 'std_type = "NAYY 4x51"'),
        InvalidParameterError,
        "not a pandapower line",
    ),
    (_replace("max_i_a = 142", "max_i_a = 142\nstd_type = 'NAYY 4x50 SE'"), GridDefinitionError, "not both"),
    (_replace("max_i_a = 142\n", ""), GridDefinitionError, r"line 'B1-B2': needs std_type .*missing max_i_a"),
    (_replace("x_ohm_per_km = 0.083", 'x_ohm_per_km = "low"'), GridDefinitionError, "must be a number"),
    (
        _replace('phase = "L1"', 'phase = "L4"'),
        InvalidParameterError,
        r"connection 'house-02': phase must be one of",
    ),
    (
        _replace("import_limit_w = 8000", "import_limit_w = -5"),
        InvalidParameterError,
        "import_limit_w cannot be below 0",
    ),
    (_replace("import_limit_w = 8000", "import_limit_w = 8000.5"), GridDefinitionError, "must be an integer"),
    (
        _replace('board = "farm"', 'board = "school"'),
        GridDefinitionError,
        "board 'school' is connected twice",
    ),
    (
        _replace('bus = "C1"\nimport', 'bus = "MV"\nimport'),
        InvalidParameterError,
        "bus 'MV', which is not an LV bus",
    ),
    (_replace('name = "C1"', 'name = "A1"'), GridDefinitionError, r"bus 'A1': defined twice"),
    (
        _replace('from_bus = "B1"\nto_bus = "C1"', 'from_bus = "B2"\nto_bus = "B1"'),
        GridDefinitionError,
        r"not connected to the slack bus 'MV': C1",
    ),  # fmt: skip
    (
        _replace('hv_bus = "MV"\nlv_bus = "LV0"', 'hv_bus = "LV0"\nlv_bus = "MV"'),
        InvalidParameterError,
        r"transformer 'T1': hv_bus 'LV0' \(0.4 kV\) must have a higher voltage",
    ),  # fmt: skip
    (_replace("v_max_pu = 1.05", "v_max_pu = 0.9"), InvalidParameterError, "voltage band"),
    (_replace("[slack]", "[slak]"), GridDefinitionError, "top level: unknown key 'slak'"),
    (_replace("vn_kv = 20.0", "vn_kv = 0"), InvalidParameterError, r"bus 'MV': vn_kv must be greater than 0"),
]


@pytest.mark.parametrize(("text", "error", "message"), BAD)
def test_bad_pilot_is_refused_with_a_readable_reason(text: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as e:
        parse_toml(text, source="pilot.toml")
    assert type(e.value) is error  # the narrowest class, not just a base
    assert str(e.value).startswith("pilot.toml: ")


def test_no_connections_or_buses() -> None:
    with pytest.raises(GridDefinitionError, match=r"no \[\[bus\]\] defined"):
        parse_toml("name = 'x'")
    head = TEXT[: TEXT.index("[[connection]]")]
    with pytest.raises(GridDefinitionError, match="no board is connected"):
        parse_toml(head)
