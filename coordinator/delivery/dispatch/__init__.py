"""Ex-ante dispatch: before an interval starts, every board with something to do gets one signed
Order. :meth:`Dispatch.run` is the whole step for one interval; its parts, by job:

- :mod:`.view`: what the step reads from the ledger, once (members, boards, devices, readings,
  the expected injection of every board);
- :mod:`.storage`: the storage market, clearing batteries and EVs against the other members'
  forecast positions;
- :mod:`.homes`: integrator homes, whose battery and EV follow their own plan;
- :mod:`.flex`: the flexibility orders active in the interval applied to the targets, and the
  offers for a flexibility request;
- :mod:`.targets`: each board's :class:`~.targets.Target`, as the delivery check sees it and as
  its changes amend it;
- :mod:`.orders`: the targets signed as Orders and published;
- :mod:`.step`: :class:`Dispatch`, which composes them and records the step in the ledger.

Acknowledgements come back through ingest (``Ledger.record_ack``). A member's devices come from its
preferences (:mod:`coordinator.members`, :mod:`coordinator.delivery.devices`).
"""

from coordinator.delivery.dispatch.orders import Setpoint
from coordinator.delivery.dispatch.step import Dispatch
from coordinator.delivery.dispatch.targets import Target

__all__ = ["Dispatch", "Setpoint", "Target"]
