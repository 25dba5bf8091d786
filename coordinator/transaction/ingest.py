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
from coordinator.ledger.quarantine import HeldReading
from coordinator.ledger.rules import DEFAULT_LIMIT_W, elapsed_s, implausible, time_refusal
from coordinator.ledger.store import BoardRecord, LastReading
from coordinator.transaction.refusals import UNKNOWN, RefusalLog
from protocol import crypto, frame, messages, topics
from protocol.errors import ProtocolError

log = logging.getLogger("peergrid.ingest")

MAX_FUTURE_S = 300  # a reading stamped further ahead than this is refused
MAX_AGE_S = 7 * 86_400  # store-and-forward may replay up to a week of readings


def enrolled_at(msg: messages.Enrol, now: float) -> int:
    """When an auto-enrolled board's key becomes valid: the time its Enrol was signed (a board
    enrols as it boots, and readings it took since follow), never later than now nor earlier than
    the oldest reading ingest accepts."""
    return max(min(int(now), msg.ts), int(now) - MAX_AGE_S)


@dataclass
class BoardState:
    """What ingest knows of one enrolled board. ``last_seq``/``e_imp``/``e_exp``/``last_ts``: its
    newest reading seen (stored or held); ``base``: its newest stored one, (ts, import, export),
    from which the energy of the next is judged plausible or not."""

    verifier: crypto.Verifier
    last_seq: int = -1
    e_imp: int = 0
    e_exp: int = 0
    last_ts: int | None = None
    key_from: int = 0  # when the current key became valid: readings stamped before are refused
    import_w: int = DEFAULT_LIMIT_W  # the board's connection limits (board file), W
    export_w: int = DEFAULT_LIMIT_W
    base: tuple[int, int, int, int] | None = None  # newest stored: ts, seq, import, export
    held: int = 0  # readings held in quarantine: every later reading is held behind them
    rejected: bool = False  # the operator rejected its held readings: refused until replaced

    def seen(self, seq: int, ts: int, e_imp: int, e_exp: int, *, stored: bool) -> None:
        self.last_seq, self.last_ts, self.e_imp, self.e_exp = seq, ts, e_imp, e_exp
        if stored:
            self.base = (ts, seq, e_imp, e_exp)


@dataclass(frozen=True)
class Held:
    """A reading held in quarantine, and why (kept, acknowledged, out of settlement)."""

    reading: messages.Reading
    reason: str


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
    settled_end: int | None = None  # end of the last settled interval (the settled-time rule)
    held: int = 0  # readings held in quarantine since start

    # the connection limits (import W, export W) of a board type (its board file); default: unknown
    limits: Callable[[str], tuple[int, int]] = lambda board_type: (DEFAULT_LIMIT_W, DEFAULT_LIMIT_W)

    def enrol(self, board: str, public: bytes, since: int = 0) -> None:
        """Track a board by its key, valid from ``since`` (Unix s)."""
        imp, exp = self.limits("")
        self.boards[board] = BoardState(crypto.Verifier(public), key_from=since, import_w=imp, export_w=exp)

    def track(
        self,
        board: BoardRecord,
        last: LastReading | None,
        held: HeldReading | None = None,
        rejected: bool = False,
    ) -> BoardState:
        """Start tracking an enrolled board from the ledger: its key and since when, its limits,
        its newest stored reading, and its newest reading held in quarantine (if any)."""
        imp, exp = self.limits(board.board_type)
        st = BoardState(crypto.Verifier(board.pubkey), key_from=board.key_from, import_w=imp, export_w=exp)
        st.rejected = rejected
        if last is not None:
            st.seen(last.seq, last.ts, last.e_imp, last.e_exp, stored=True)
        if held is not None and held.seq > st.last_seq:
            st.seen(held.seq, held.ts, held.e_imp, held.e_exp, stored=False)
            st.held = 1
        self.boards[board.board_id] = st
        return st

    def decided(self, decisions: dict[str, tuple[str, int]], last: dict[str, LastReading]) -> list[str]:
        """Take the operator's decisions on quarantined readings (board -> the state and sequence
        number of its newest decided one): a board whose held readings were all released goes on
        from its newest stored reading; one whose were rejected is refused from now on. A board
        with a reading held after the decision (not yet stored, or newer) stays held."""
        out = []
        for board_id, st in self.boards.items():
            d = decisions.get(board_id)
            if not st.held or d is None or d[1] < st.last_seq:
                continue
            st.held = 0
            if d[0] == "rejected":
                st.rejected = True
                out.append(f"{board_id}: quarantined readings rejected; refused until retired or replaced")
            elif board_id in last:
                r = last[board_id]
                st.base = (r.ts, r.seq, r.e_imp, r.e_exp)
                out.append(f"{board_id}: quarantined readings released")
        return out

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

    def check(self, topic: str, payload: bytes) -> messages.Message | Held:
        """Authenticate and check one frame; raise RejectedMessage with the reason. A reading whose
        energy is implausible (and every later one of its board) comes back ``Held``."""
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
            if msg.board not in self.boards:  # auto-enrolled: its key valid from its Enrol, as stored
                self.enrol(msg.board, msg.pubkey, since=enrolled_at(msg, self.now()))
        elif isinstance(msg, messages.Reading):
            reason = self._check_reading(msg)
            if reason is not None:
                self.held += 1
                return Held(msg, reason)
        return msg

    def _check_reading(self, r: messages.Reading) -> str | None:
        """Refuse a reading (RejectedMessage) or accept it: None to store it, or why it is held."""
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
        why = time_refusal(r.ts, key_from=state.key_from, last_ts=state.last_ts, settled_end=self.settled_end)
        if why is not None:
            raise RejectedMessage(why[0], f"{r.board} seq {r.seq}: {why[1]}")
        if state.rejected:
            raise RejectedMessage(
                "board_rejected", f"{r.board}: its quarantined readings were rejected (retire or replace it)"
            )
        held = None
        if state.held:
            held = f"held behind the board's {state.held} quarantined reading(s)"
        elif state.base is not None:
            t0, s0, i0, x0 = state.base
            dt = elapsed_s(r.ts, r.seq, t0, s0)
            held = implausible(r.e_imp - i0, r.e_exp - x0, dt, state.import_w, state.export_w)
        state.seen(r.seq, r.ts, r.e_imp, r.e_exp, stored=held is None)
        if held is not None:
            state.held += 1
            log.warning("reading %s seq %d held in quarantine: %s", r.board, r.seq, held)
        return held

    def handle(self, topic: str, payload: bytes) -> messages.Message | Held | None:
        """``check`` that counts and logs refusals instead of raising them."""
        try:
            msg = self.check(topic, payload)
        except RejectedMessage as e:
            self.rejected[e.code] += 1
            self.refusals.refused(self._sender(topic), e.code, topic, e.reason)
            return None
        self.accepted[type(msg).__name__] += 1
        return msg
