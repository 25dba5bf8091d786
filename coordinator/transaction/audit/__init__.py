"""Audit a member can check without the coordinator's database: signed bundles and disputes.

``export.bundle`` collects a member's board-signed readings (the original frames), the
coordinator-signed interval results with the clearing records they sign, the tariff and the board
keys with their validity; ``verify.verify_bundle`` checks every signature and recomputes the bill
from that alone. ``dispute`` records a member's objection to an interval with its evidence.
"""

from coordinator.errors import CoordinatorError


class AuditError(CoordinatorError):
    """An audit bundle could not be made, read or a dispute not recorded."""


FORMAT = "peergrid-audit/1"
