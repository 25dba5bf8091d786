"""Grid models of the benchmark networks, board mapping, limits and loader errors."""

from __future__ import annotations

import pytest

from coordinator.delivery.errors import (
    DeliveryError,
    GridDefinitionError,
    InvalidParameterError,
    ScheduleError,
    UnknownBusError,
    UnknownGridError,
)
from coordinator.delivery.grid import (
    PANDAPOWER_GRIDS,
    GridModel,
    Limits,
    assign_boards,
    from_pandapower,
    load_pandapower,
    load_simbench,
    simbench_lv_codes,
)
from coordinator.errors import CoordinatorError
from tests.delivery.conftest import grid_by_name

pp = pytest.importorskip("pandapower", reason="the sim extra (pandapower) is not installed")


def test_cigre_lv(cigre: GridModel) -> None:
    assert (len(cigre.buses), len(cigre.lines), len(cigre.transformers)) == (44, 37, 3)
    assert len(cigre.lv_buses) == 40  # the four 20 kV buses are the slack side
    assert len(cigre.connection_buses) == 15
    assert cigre.connection_buses[0] == "Bus R1" and cigre.peak_load_w["Bus R1"] == 190_000
    assert {t.sn_kva for t in cigre.transformers} == {500.0, 150.0, 300.0}
    assert cigre.bus("Bus R18").vn_kv == 0.4
    with pytest.raises(UnknownBusError, match="no bus 'Bus R99'"):
        cigre.bus("Bus R99")


def test_kerber_names_are_unique_ids() -> None:
    g = grid_by_name("kerber_landnetz_kabel_1")
    names = [b.name for b in g.buses]
    assert len(set(names)) == len(names)
    assert len(g.connection_buses) == 8 and set(g.peak_load_w.values()) == {8000}
    assert g.transformers[0].sn_kva == 100.0
    assert {ln.max_i_a for ln in g.lines} <= {275.0, 141.0, 142.0}


def test_simbench(rural: GridModel) -> None:
    codes = simbench_lv_codes()
    assert "1-LV-rural1--0-sw" in codes and "1-LV-urban6--2-no_sw" in codes and len(codes) == 36
    assert len(rural.connection_buses) == 13
    assert sum(rural.pv_w.values()) == 468_200
    assert rural.transformers[0].sn_kva == 160.0
    assert rural.net.load.empty and rural.net.sgen.empty  # the schedule supplies every injection
    assert len(rural.source.sgen) == 8  # the source keeps them, and the profiles


def test_unknown_grids() -> None:
    with pytest.raises(UnknownGridError, match="no pandapower grid 'kerber_gross'.*cigre_lv"):
        load_pandapower("kerber_gross")
    with pytest.raises(UnknownGridError, match="no SimBench LV grid '1-LV-rural9--0-sw'"):
        load_simbench("1-LV-rural9--0-sw")
    assert "kerber_vorstadtnetz_kabel_1" in PANDAPOWER_GRIDS


def test_net_without_slack_or_loads_is_refused() -> None:
    net = pp.create_empty_network()
    a = pp.create_bus(net, 0.4)
    b = pp.create_bus(net, 0.4)
    pp.create_line(net, a, b, 0.1, "NAYY 4x150 SE")
    pp.create_load(net, b, 0.01)
    with pytest.raises(GridDefinitionError, match="no in-service external grid"):
        from_pandapower(net, "x")
    pp.create_ext_grid(net, a)
    net.load.drop(net.load.index, inplace=True)
    with pytest.raises(GridDefinitionError, match="no loads or generators"):
        from_pandapower(net, "x")


def test_boards_map_deterministically(cigre: GridModel) -> None:
    boards = [f"b{i:02d}" for i in range(20)]
    g1 = assign_boards(cigre, boards, import_limit_w=30_000)
    g2 = assign_boards(cigre, list(reversed(boards)), import_limit_w=30_000)
    assert g1.connections == g2.connections
    assert g1.board_bus("b00") == cigre.connection_buses[0]
    assert g1.board_bus("b15") == cigre.connection_buses[0]  # 15 buses: round robin
    assert g1.board_bus("b16") == cigre.connection_buses[1]
    sched = g1.bus_schedule({"b00": 1000, "b15": -300, "b01": 5})
    assert sched[cigre.connection_buses[0]] == 700 and sched[cigre.connection_buses[1]] == 5
    with pytest.raises(GridDefinitionError, match="repeated: b01"):
        assign_boards(cigre, ["b01", "b02", "b01"])
    with pytest.raises(InvalidParameterError, match="cannot be negative"):
        assign_boards(cigre, ["b01"], export_limit_w=-1)
    with pytest.raises(ScheduleError, match="board 'zz'"):
        g1.bus_schedule({"zz": 1})
    with pytest.raises(ScheduleError, match="integer in W"):
        g1.bus_schedule({"b01": 1.0})  # type: ignore[dict-item]


def test_limits() -> None:
    assert Limits() == Limits(0.95, 1.05, 100.0, 100.0)
    assert (Limits.en50160().v_min_pu, Limits.en50160().v_max_pu) == (0.90, 1.10)
    with pytest.raises(InvalidParameterError, match="voltage band"):
        Limits(v_min_pu=1.02)
    with pytest.raises(InvalidParameterError, match="line_max_percent"):
        Limits(line_max_percent=-5)


def test_one_root_exception() -> None:
    for cls in (GridDefinitionError, UnknownBusError, InvalidParameterError, UnknownGridError, ScheduleError):
        assert issubclass(cls, DeliveryError) and issubclass(cls, CoordinatorError)
