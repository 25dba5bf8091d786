"""The package's root exception and its narrow subclasses."""

from coordinator.errors import CoordinatorError


class OpenAdrError(CoordinatorError):
    """Something about the VTN or its objects; the message names what."""


class VtnUnreachable(OpenAdrError):
    """The VTN could not be reached or answered with an HTTP error."""


class BadObject(OpenAdrError):
    """The VTN answered something that is not the OpenADR 3 object expected (garbage)."""


class UnknownResource(OpenAdrError):
    """An event targets a resource this coordinator does not have."""
