"""Errors of provisioning: bad inputs, a failed tool, a broker site that is not set up."""

from coordinator.errors import CoordinatorError


class ProvisionError(CoordinatorError):
    """A bundle, flash, enrolment or broker-configuration step cannot be done; says why."""
