"""Ingest: authenticate and check every inbound frame, keep what is good, count what is not.

Nothing here trusts a byte before its signature has been checked against the board's enrolled
key for that exact topic. Each refusal raises ``RejectedMessage`` with a reason code; ``Ingest``
counts it and logs it as a rate-limited summary per board and reason (``refusals``), and the
caller carries on (a bad message never stops the service).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from coordinator.errors import RejectedMessage
from coordinator.transaction.refusals import UNKNOWN, RefusalLog
from protocol import crypto, frame, messages, topics
from protocol.errors import ProtocolError

log = logging.getLogger("peergrid.ingest")

MAX_FUTURE_S = 300  # a reading stamped further ahead than this is refused
MAX_AGE_S = 7 * 86_400  # store-and-forward may replay up to a week of readings


@dataclass
class BoardState:
    verifier: crypto.Verifier
    last_seq: int = -1
    e_imp: int = 0
    e_exp: int = 0


@dataclass
class Ingest:
    """Checks frames for one grid. ``now`` returns Unix seconds (injected for tests/simulation)."""

    grid: str
    now: Callable[[], float]
    auto_enrol: bool = False
    # whether the registry holds a board id (in any status): auto_enrol takes only new ids
    registered: Callable[[str], bool] = lambda board: False
    boards: dict[str, BoardState] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    refusals: RefusalLog = field(default_factory=RefusalLog)  # the rate-limited log of refusals

    def enrol(self, board: str, public: bytes) -> None:
        self.boards[board] = BoardState(crypto.Verifier(public))

    def _verifier_for(self, msg: messages.Message) -> crypto.Verifier:
        if isinstance(msg, messages.Enrol):
            known = self.boards.get(msg.board)
            if known is not None and known.verifier.public != msg.pubkey:
                raise RejectedMessage("key_conflict", f"{msg.board} is enrolled with another key")
            if known is None and not self.auto_enrol:
                raise RejectedMessage("enrol_pending", f"{msg.board} awaits operator approval")
            if known is None and self.registered(msg.board):  # pending or retired: the operator's
                raise RejectedMessage("not_enrollable", f"{msg.board} is registered already (not here)")
            return crypto.Verifier(msg.pubkey)  # proof of possession: signed by the key it carries
        board = messages.board_of(msg)
        if msg.DIR != messages.UP or board is None:
            raise RejectedMessage("wrong_direction", f"{type(msg).__name__} is not sent by boards")
        state = self.boards.get(board)
        if state is None:
            raise RejectedMessage("unknown_board", f"board {board!r} is not enrolled")
        return state.verifier

    def _sender(self, topic: str) -> str:
        """The enrolled board a topic names, or ``unknown`` (any id can be put in a topic)."""
        parts = topic.split("/")
        if len(parts) == 5 and parts[3] in self.boards:
            return parts[3]
        return UNKNOWN

    def check(self, topic: str, payload: bytes) -> messages.Message:
        """Authenticate and check one frame; raise RejectedMessage with the reason."""
        try:
            # ids hold no "/": a topic under this grid's root is this grid's (open_frame then
            # checks the whole topic against the message); anything else is parsed for the reason
            if not topic.startswith(f"{topics.ROOT}/{self.grid}/"):
                grid = topics.parse(topic)[0]
                if grid != self.grid:
                    raise RejectedMessage("wrong_grid", f"topic of grid {grid!r}, not {self.grid!r}")
            msg = frame.open_frame(topic, payload, self._verifier_for)
        except ProtocolError as e:
            raise RejectedMessage(getattr(e, "code", "protocol"), str(e)) from None
        if isinstance(msg, messages.Enrol):
            if msg.board not in self.boards:
                self.enrol(msg.board, msg.pubkey)
        elif isinstance(msg, messages.Reading):
            self._check_reading(msg)
        return msg

    def _check_reading(self, r: messages.Reading) -> None:
        state = self.boards[r.board]
        now = self.now()
        if r.ts > now + MAX_FUTURE_S:
            ahead = r.ts - now
            raise RejectedMessage("from_future", f"{r.board} seq {r.seq} stamped {ahead:.0f} s ahead")
        if r.ts < now - MAX_AGE_S:
            raise RejectedMessage("too_old", f"{r.board} seq {r.seq} is {now - r.ts:.0f} s old")
        if r.seq == state.last_seq:
            raise RejectedMessage("duplicate", f"{r.board} seq {r.seq} already stored")
        if r.seq < state.last_seq:
            raise RejectedMessage("replay", f"{r.board} seq {r.seq} after seq {state.last_seq}")
        if r.e_imp < state.e_imp or r.e_exp < state.e_exp:
            raise RejectedMessage("register_backwards", f"{r.board} seq {r.seq}: registers went down")
        state.last_seq, state.e_imp, state.e_exp = r.seq, r.e_imp, r.e_exp

    def handle(self, topic: str, payload: bytes) -> messages.Message | None:
        """``check`` that counts and logs refusals instead of raising them."""
        try:
            msg = self.check(topic, payload)
        except RejectedMessage as e:
            self.rejected[e.code] += 1
            self.refusals.refused(self._sender(topic), e.code, topic, e.reason)
            return None
        self.accepted[type(msg).__name__] += 1
        return msg
