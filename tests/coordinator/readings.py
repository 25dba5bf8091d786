"""Test helper: virtual boards' signed readings, verified and stored in a ledger as ingest would."""

from __future__ import annotations

from collections.abc import Iterable

from coordinator.ledger import Ledger
from protocol import crypto, frame, messages
from sim.board import VirtualBoard


def store(ledger: Ledger, boards: Iterable[VirtualBoard], times: Iterable[int]) -> None:
    """Each board reads at each time (in time order), the frame is verified, and all are stored."""
    boards = list(boards)
    batch = []
    for t in times:
        for b in boards:
            topic, fr = b.reading(t)
            r = frame.open_frame(topic, fr, lambda msg, b=b: crypto.Verifier(b.key.public))
            assert isinstance(r, messages.Reading)
            batch.append((r, bytes(frame.split(fr)[1])))
    ledger.add_readings(batch)
