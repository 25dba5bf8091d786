"""Off-the-shelf EV chargers over OCPP: the coordinator as their central system.

A wallbox connects by WebSocket to ``[ocpp] listen`` as ``ws://host:port/<charger id>`` (OCPP 1.6J,
subprotocol ``ocpp1.6``, or 2.0.1, ``ocpp2.0.1``; ``wss://`` with ``[ocpp] tls_cert``). Only a charger
bound to a member (``[ocpp.chargers]`` in the config, or ``peergrid charger bind``) and
authenticating with its password (HTTP Basic, OCPP security profiles 1 and 2: :mod:`.auth`) is
accepted; any other connection is refused before the WebSocket opens, counted and logged at a
bounded rate. A bound charger reports sessions and meter values (stored by
the ledger, never billed), and after each interval's dispatch it gets the member's EV current as
a charging profile (:mod:`.profiles`) whose later period keeps the car's departure need. A charger
that goes silent or refuses a profile is reported (``/healthz``, log, counter) and its EV is left
out of the next interval's storage market (:mod:`coordinator.delivery.chargers`). Its energy per
settled interval is cross-checked against its member's board, whose signed readings alone are
settled.

Modules: :mod:`.settings` (the ``[ocpp]`` section), :mod:`.auth` (passwords, their hashes, the
``Authorization`` header, the refusals' log), :mod:`.profiles` (pure: the limit and the
schedule), :mod:`.central` (the WebSocket server and the OCPP handlers of both versions),
:mod:`.service` (what the composition root runs: the server, profiles after each dispatch, the
silence check and the cross-check).
"""

from __future__ import annotations

from coordinator.errors import CoordinatorError


class ChargerError(CoordinatorError):
    """Root of the OCPP central system's errors: a bad ``[ocpp]`` setting, an unknown charger or
    member, a value out of range from a charger."""
