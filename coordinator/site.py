"""What every loop of one coordinator shares about its community: the grid id used in the MQTT
topics, the market interval length and the tariff. Built once from the config by the composition
root (:mod:`coordinator.service.app`) and handed to the interval loop, settlement and dispatch."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.market import Tariff


@dataclass(frozen=True)
class Site:
    grid: str  # identifier in the MQTT topics
    length: int  # market interval, s (divides a day)
    tariff: Tariff
