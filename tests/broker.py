"""A real Mosquitto started by the tests, on a free loopback port, restartable mid-test: the one the
simulator starts (``sim.mosquitto``), with blocking ``start``/``stop``/``restart``."""

from sim.mosquitto import Mosquitto, launch, mosquitto_exe, terminate

__all__ = ["Mosquitto", "launch", "mosquitto_exe", "terminate"]
