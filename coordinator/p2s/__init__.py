"""Peer-to-system in a running coordinator: what members set about their devices and what grid
operators ask of the community, by the operator API, the CLI and OpenADR 3.

- :mod:`.devices`: a member's devices and preferences set or changed (validated by the typed member
  model and the member's board limits), recorded with who and when, in force from the next
  interval;
- :mod:`.requests`: a grid operator's flexibility request checked and accepted (the interval loop's
  flexibility step, :mod:`coordinator.delivery.flexstep`, clears, delivers, verifies and pays it);
- :mod:`.limits`: a capacity limit on a congestion point or the connection.

The ledger keeps all of it (:mod:`coordinator.ledger.member_changes`,
:mod:`coordinator.ledger.flex_requests`), so the CLI, the API and the OpenADR VEN write to the
same place the running service reads from.
"""

from coordinator.p2s.errors import P2sError

__all__ = ["P2sError"]
