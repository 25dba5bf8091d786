"""A virtual meter board under CPython: integrates a power profile into cumulative registers and
publishes signed frames exactly as a real board does (same protocol code)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from protocol import crypto, frame, messages, topics

MWS_PER_MWH = 3600  # milliwatt-seconds in a milliwatt-hour
SEQ_BLOCK = 64  # the firmware persists its sequence ceiling in blocks of this many (registers.py)


@dataclass
class VirtualBoard:
    grid: str
    board: str
    seed: bytes
    power_w: Callable[[int], int]  # net power at a Unix second: + import, - export
    board_type: str = "virtual"
    bat_soc: int | None = None  # state of charge the board reports (battery or EV), per-mille
    bat_p: int | None = None  # battery power the board reports, W (+ charging)
    seq: int = 0
    acc_imp: int = 0  # import energy, mW*s (exact; the register is its whole mWh)
    acc_exp: int = 0  # export energy, mW*s
    last_ts: int | None = None
    skew: int = 0  # the board's clock runs this many seconds ahead of true time (- behind)
    key: crypto.SigningKey = field(init=False)

    def __post_init__(self) -> None:
        self.key = crypto.SigningKey(self.seed)

    def _integrate(self, ts: int, p: int | None = None) -> int:
        """Advance the meter to ``ts``; ``p`` (default ``power_w(ts)``) held since the last call."""
        if p is None:
            p = self.power_w(ts)
        if self.last_ts is not None and ts > self.last_ts:
            mws = abs(p) * 1000 * (ts - self.last_ts)
            if p >= 0:
                self.acc_imp += mws
            else:
                self.acc_exp += mws
        self.last_ts = ts
        return p

    @property
    def e_imp(self) -> int:
        """Cumulative import register, mWh."""
        return self.acc_imp // MWS_PER_MWH

    @property
    def e_exp(self) -> int:
        """Cumulative export register, mWh."""
        return self.acc_exp // MWS_PER_MWH

    def advance(self, ts: int, p: int) -> None:
        """Meter ``p`` W (+ import) from the last call to ``ts`` without sending a reading."""
        self._integrate(ts, p)

    def reboot(self) -> None:
        """A restart: registers and the persisted sequence ceiling survive (as on a board, whose
        first reading after boot is numbered above every number it may have used)."""
        self.seq += SEQ_BLOCK - self.seq % SEQ_BLOCK

    def reading(self, ts: int, p: int | None = None) -> tuple[str, bytes]:
        """Advance the meter to ``ts`` and return (topic, signed frame) of the reading."""
        p = self._integrate(ts, p)
        msg = messages.Reading(
            board=self.board,
            seq=self.seq,
            ts=ts + self.skew,
            e_imp=self.e_imp,
            e_exp=self.e_exp,
            p=p,
            u=230_000,
            bat_soc=self.bat_soc,
            bat_p=self.bat_p,
            flags=0,
        )
        self.seq += 1
        topic = topics.topic_for(self.grid, msg)
        return topic, frame.seal(msg, topic, self.key)

    def enrolment(self, ts: int, fw: str = "sim") -> tuple[str, bytes]:
        msg = messages.Enrol(
            board=self.board, pubkey=self.key.public, board_type=self.board_type, fw=fw, ts=ts
        )
        topic = topics.topic_for(self.grid, msg)
        return topic, frame.seal(msg, topic, self.key)
