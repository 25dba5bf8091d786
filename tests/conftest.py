from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import Mosquitto


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A real Mosquitto broker for one test."""
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# The sim extra (pandapower, simbench, demandlib, pvlib) is heavy and not needed on a coordinator
# without a grid model: with only the dev extra installed, a test that reaches for it is skipped,
# named with the package it needed, instead of failing.
SIM_EXTRA = ("pandapower", "simbench", "demandlib", "pvlib")


def _sim_extra_missing(exc: BaseException) -> str | None:
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in SIM_EXTRA:
        return exc.name
    from sim.errors import ProfileError

    if isinstance(exc, ProfileError) and "pip install -e '.[sim]'" in str(exc):
        return str(exc).split("needs ")[1].split(":")[0]
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    outcome = yield
    _skip_without_sim_extra(outcome)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    outcome = yield
    _skip_without_sim_extra(outcome)


def _skip_without_sim_extra(outcome: object) -> None:
    excinfo = getattr(outcome, "excinfo", None)
    if excinfo is None:
        return
    missing = _sim_extra_missing(excinfo[1])
    if missing is not None:
        outcome.force_exception(pytest.skip.Exception(f"needs the sim extra ({missing})"))  # type: ignore[attr-defined]
