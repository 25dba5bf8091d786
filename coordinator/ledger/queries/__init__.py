"""Named queries of the ledger, one module per reader (settlement, dispatch, web, audit, the
simulator's invariants, ...). Every SQL statement of peergrid lives in :mod:`coordinator.ledger`;
a reader calls these functions with the :class:`~coordinator.ledger.Ledger` (or the transaction
it is in), never the connection."""
