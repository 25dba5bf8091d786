"""OpenADR 3 towards the grid operator: the coordinator as a VEN (virtual end node) of the
operator's VTN, over the OpenADR 3 REST API (aiohttp; the ``openadr3-client`` package needs
Python 3.12 and the coordinator runs on 3.11).

- :mod:`.config`: the ``[openadr]`` section;
- :mod:`.events`: an OpenADR event as delivery limits and flexibility requests (pure);
- :mod:`.ven`: the polling loop: token, events, reports of delivered flexibility.
"""

from coordinator.openadr.errors import OpenAdrError

__all__ = ["OpenAdrError"]
