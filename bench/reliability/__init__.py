"""The reliability suite: fault injection with counted readings (``faults``), forged, replayed,
cross-topic and stale messages (``attacks``) and fuzzing of every inbound path (``fuzz``).

``python -m bench.reliability`` runs the short version (what CI runs, through
``tests/reliability``); ``--long`` runs every fault on its own and all at once on 40 boards for
6 hours of readings, and fuzzes with at least a million inputs.
"""
