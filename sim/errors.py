"""The simulator's exceptions: one root (a CoordinatorError, so the CLI reports it) and narrow kinds."""

from __future__ import annotations

from coordinator.errors import CoordinatorError


class SimError(CoordinatorError):
    """Something the simulator cannot do as asked."""


class ScenarioError(SimError):
    """A scenario file is missing, malformed or has a bad value (the message names the key)."""


class ProfileError(SimError):
    """Physics profiles cannot be built (a data package is missing, or the request is out of range)."""
